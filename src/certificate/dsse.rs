//! Ed25519 keys (PEM files that openssl reads) and DSSE envelopes.
//!
//! A certificate is a DSSE envelope: `payloadType`, the base64 `payload` and
//! one signature over DSSE's pre-authentication encoding. The envelope file is
//! written in canonical JSON, and [`open_envelope`] insists on exactly that
//! form, so that a certificate whose file differs by one byte is rejected even
//! where the change would not affect the signed bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::jcs;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("public key {path}: {message}")]
    Public { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A private signing key with its id. Its `Debug` never shows key material.
pub struct Identity {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads a PKCS#8 PEM private key. The file (after following links, as
    /// Kubernetes Secret volumes use them) must pass [`key_permissions`].
    pub fn load(path: &Path, key_id: &str) -> Result<Self, KeyError> {
        let err = |message: String| KeyError::Key {
            path: path.to_path_buf(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            key_permissions(meta.mode(), meta.uid(), me).map_err(err)?;
        }
        let pem = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|_| err("not an Ed25519 private key in PKCS#8 PEM form".into()))?;
        Ok(Self {
            key,
            key_id: key_id.to_string(),
        })
    }

    pub fn from_key(key: SigningKey, key_id: &str) -> Self {
        Self {
            key,
            key_id: key_id.to_string(),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `payload` into a canonical envelope.
    pub fn seal(&self, payload_type: &str, payload: &[u8]) -> Envelope {
        let sig = self.key.sign(&pae(payload_type, payload));
        Envelope {
            payload_type: payload_type.to_string(),
            payload: B64.encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: self.key_id.clone(),
                sig: B64.encode(sig.to_bytes()),
            }],
        }
    }
}

/// A new random key.
pub fn generate() -> Result<SigningKey, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Who may read the signing key, by the rule PostgreSQL applies to its TLS
/// key: a key owned by lethe's own user must be readable by that user alone
/// (0600, 0400); a key owned by root may also be readable by its group
/// (0640, 0440), which is what a Kubernetes Secret volume with `defaultMode:
/// 0400` and a pod `fsGroup` gives a non-root container. Never by others,
/// never writable by the group, never owned by anyone else. lethe running
/// as root owns a root-owned key: 0600 or 0400.
pub fn key_permissions(mode: u32, owner: u32, me: u32) -> Result<(), String> {
    let mode = mode & 0o7777;
    if mode & 0o007 != 0 {
        return Err(format!(
            "the file is readable by group or others (mode {mode:04o}); run chmod 600 on it"
        ));
    }
    if owner == me {
        // lethe running as root reads a root-owned key as its own, as
        // PostgreSQL does: the group may read a root-owned key only so that
        // a non-root lethe can, and root needs no group to read it.
        if mode & 0o070 != 0 {
            let why = if me == 0 {
                "; lethe runs as root, so the key is its own: a root-owned key may be group-readable (0640, 0440) only for a lethe that is not root"
            } else {
                ""
            };
            return Err(format!(
                "the file is readable by group or others (mode {mode:04o}); run chmod 600 on it{why}"
            ));
        }
        return Ok(());
    }
    if owner == 0 {
        if mode & 0o030 != 0 {
            return Err(format!(
                "the file is writable by its group (mode {mode:04o}); a root-owned key may be 0640 or 0440 at most"
            ));
        }
        return Ok(());
    }
    Err(format!(
        "the file is owned by uid {owner}, neither lethe's user ({me}) nor root"
    ))
}

/// Writes `out` (private, mode 0600, PKCS#8 PEM) and `out.pub` (SPKI PEM).
/// Refuses to overwrite either file.
pub fn write_key_pair(out: &Path, key: &SigningKey) -> Result<PathBuf, KeyError> {
    let public = public_key_path(out);
    for p in [out, public.as_path()] {
        if p.exists() {
            return Err(KeyError::Io {
                path: p.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists; refusing to overwrite a key",
                ),
            });
        }
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    // PKCS#8 v1 (RFC 8410, without the optional public key): the form every
    // openssl 3 release reads.
    let bytes = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    let private_pem = bytes
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Key {
            path: out.into(),
            message: e.to_string(),
        })?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Key {
            path: out.into(),
            message: e.to_string(),
        })?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(out).map_err(io(out))?;
    f.write_all(private_pem.as_bytes()).map_err(io(out))?;
    f.sync_all().map_err(io(out))?;
    std::fs::write(&public, public_pem.as_bytes()).map_err(io(&public))?;
    Ok(public)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `KEY.pub` for `KEY`.
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Reads an SPKI PEM public key.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let err = |message: String| KeyError::Public {
        path: path.to_path_buf(),
        message,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    VerifyingKey::from_public_key_pem(&pem)
        .map_err(|_| err("not an Ed25519 public key in SubjectPublicKeyInfo PEM form".into()))
}

/// DSSE pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(
        format!(
            "DSSEv1 {} {} {} ",
            payload_type.len(),
            payload_type,
            payload.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    pub keyid: String,
    pub sig: String,
}

impl Envelope {
    /// The bytes of a certificate file: canonical JSON and a newline.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let mut bytes = jcs::to_vec(self).expect("an envelope always serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Why an envelope was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("not a DSSE envelope: {0}")]
    Malformed(String),
    #[error("the envelope is not in canonical form (the file was altered)")]
    NotCanonical,
    #[error("payload type is {found:?}, expected {expected:?}")]
    PayloadType { found: String, expected: String },
    #[error("expected exactly one signature, found {0}")]
    SignatureCount(usize),
    #[error("the signature does not verify with this public key")]
    BadSignature,
}

/// Parses a certificate file and checks its form, payload type and
/// signature. Returns the envelope and the signed payload bytes.
pub fn open_envelope(
    file: &[u8],
    expected_type: &str,
    key: &VerifyingKey,
) -> Result<(Envelope, Vec<u8>), EnvelopeError> {
    let envelope: Envelope =
        serde_json::from_slice(file).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    if envelope.to_file_bytes() != file {
        return Err(EnvelopeError::NotCanonical);
    }
    if envelope.payload_type != expected_type {
        return Err(EnvelopeError::PayloadType {
            found: envelope.payload_type.clone(),
            expected: expected_type.to_string(),
        });
    }
    if envelope.signatures.len() != 1 {
        return Err(EnvelopeError::SignatureCount(envelope.signatures.len()));
    }
    let payload = B64
        .decode(&envelope.payload)
        .map_err(|e| EnvelopeError::Malformed(format!("payload is not base64: {e}")))?;
    let sig = B64
        .decode(&envelope.signatures[0].sig)
        .map_err(|_| EnvelopeError::BadSignature)?;
    let sig = Signature::from_slice(&sig).map_err(|_| EnvelopeError::BadSignature)?;
    key.verify_strict(&pae(&envelope.payload_type, &payload), &sig)
        .map_err(|_| EnvelopeError::BadSignature)?;
    Ok((envelope, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification() {
        // The example from the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn seal_and_open() {
        let key = Identity::from_key(SigningKey::from_bytes(&[7u8; 32]), "k1");
        let env = key.seal("t", b"{\"a\":1}");
        let file = env.to_file_bytes();
        let (_, payload) = open_envelope(&file, "t", &key.verifying_key()).unwrap();
        assert_eq!(payload, b"{\"a\":1}");
        assert_eq!(
            open_envelope(&file, "u", &key.verifying_key()).unwrap_err(),
            EnvelopeError::PayloadType {
                found: "t".into(),
                expected: "u".into()
            }
        );
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert_eq!(
            open_envelope(&file, "t", &other).unwrap_err(),
            EnvelopeError::BadSignature
        );
        let mut spaced = file.clone();
        spaced.insert(1, b' ');
        assert_eq!(
            open_envelope(&spaced, "t", &key.verifying_key()).unwrap_err(),
            EnvelopeError::NotCanonical
        );
    }

    #[test]
    fn keys_round_trip_through_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/k");
        let key = generate().unwrap();
        let public = write_key_pair(&path, &key).unwrap();
        let loaded = Identity::load(&path, "id").unwrap();
        assert_eq!(loaded.verifying_key(), load_public_key(&public).unwrap());
        assert!(write_key_pair(&path, &key).is_err(), "must not overwrite");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let err = Identity::load(&path, "id").unwrap_err().to_string();
            assert!(
                err.contains("readable by group or others (mode 0640)"),
                "{err}"
            );
        }
        assert!(!format!("{loaded:?}").contains("key:"));
    }

    #[test]
    fn key_permissions_follow_the_postgresql_rule() {
        let me = 65532;
        // lethe's own file: the owner alone.
        assert!(key_permissions(0o100600, me, me).is_ok());
        assert!(key_permissions(0o100400, me, me).is_ok());
        assert!(key_permissions(0o100640, me, me).is_err());
        assert!(key_permissions(0o100604, me, me).is_err());
        // root's file (a Secret volume with fsGroup): the group may read.
        assert!(key_permissions(0o100440, 0, me).is_ok());
        assert!(key_permissions(0o100640, 0, me).is_ok());
        assert!(key_permissions(0o100400, 0, me).is_ok());
        assert!(key_permissions(0o100444, 0, me).is_err(), "others");
        assert!(key_permissions(0o100460, 0, me).is_err(), "group-writable");
        assert!(key_permissions(0o100470, 0, me).is_err());
        // anybody else's file.
        let e = key_permissions(0o100400, 1000, me).unwrap_err();
        assert!(e.contains("owned by uid 1000"), "{e}");
        // root running lethe on root's file: its own, so strict, and said why.
        let e = key_permissions(0o100640, 0, 0).unwrap_err();
        assert!(
            e.contains("lethe runs as root, so the key is its own"),
            "{e}"
        );
        assert!(key_permissions(0o100600, 0, 0).is_ok());
        assert!(key_permissions(0o100400, 0, 0).is_ok());
    }
}
