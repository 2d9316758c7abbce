//! Deletion certificates: a signed statement of what a run deleted.
//!
//! A certificate is a DSSE envelope (Ed25519) around an RFC 8785 canonical
//! JSON payload. The payload names no object key, so it can be shared: the
//! keys are in the manifest written beside it (JSON Lines, one deleted object
//! per line), which the payload pins by its SHA-256 and by the RFC 6962 Merkle
//! root over its lines. Certificates are numbered and each names the SHA-256 of
//! its predecessor, so a missing certificate shows as a gap. This module owns
//! the formats, signing and verification; it never touches the database or a
//! store (the caller streams manifest entries in).

pub mod dsse;
pub mod jcs;
pub mod merkle;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use dsse::{Envelope, Identity};

pub const PAYLOAD_TYPE: &str = "application/vnd.lethe.deletion-certificate.v1+json";
pub const METHOD: &str = "deleted through the storage API; absence verified";
pub const KIND: &str = "lethe deletion certificate";
/// A certificate issued for one data subject's erasure request.
pub const RECEIPT_KIND: &str = "lethe erasure receipt";
/// What a receipt promises about recordings that appear later.
pub const LATER_RECORDINGS: &str = "recordings of this subject that appear later (restored from a backup, say) are erased at the next retention run and listed in that run's certificate";

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
    /// A file of that name is already there with other bytes: certificates
    /// and manifests are created, never replaced.
    #[error(
        "{path} already exists with SHA-256 {found}, and lethe's certificate #{sequence} would have SHA-256 {expected} there; it was not replaced"
    )]
    Exists {
        path: PathBuf,
        sequence: u64,
        found: String,
        expected: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertificateError + '_ {
    move |source| CertificateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub certificate: String,
    pub format: u32,
    pub sequence: u64,
    /// Hex SHA-256 of the previous certificate file; `null` for the first.
    pub previous_certificate_sha256: Option<String>,
    pub key_id: String,
    pub tool: Tool,
    pub issued_at: String,
    /// The run that issued this certificate.
    pub run: RunSummary,
    /// Format 2: the runs whose outcomes it certifies (the issuing run's,
    /// and those an interrupted run or a failed certificate left to the
    /// next run). Format 1: every run with ledger rows in the covered range.
    pub runs: Vec<RunSummary>,
    pub window: Window,
    pub ledger: LedgerAnchor,
    pub policies: Vec<PolicyDigest>,
    pub stores: Vec<StoreSection>,
    pub counts: Counts,
    pub method: String,
    pub manifest_file: String,
    pub manifest_sha256: String,
    pub merkle_root: String,
    /// Present on an erasure receipt: the request, and what was kept and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure: Option<Erasure>,
    /// SHA-256 of the approved plan file (`plan --out`) the run was limited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_plan_sha256: Option<String>,
}

/// The erasure section of a receipt. It names the subject only by the SHA-256
/// of its id, and no case and no other person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Erasure {
    pub request: String,
    pub subject_sha256: String,
    /// The subject's recordings that were not erased, with their legal basis (GDPR Art. 17(3)).
    pub protected: Vec<Protected>,
    pub later_recordings: String,
    /// Said when the request found nothing of the subject in any store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// The notice of an erasure that found nothing to erase and nothing kept.
pub const NOTHING_FOUND: &str = "no object attributable to this subject was found in any store: check the subject's id as the keys and sidecars spell it";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protected {
    pub store: String,
    pub key: String,
    pub basis: String,
    /// Until when the obligation keeps it, where one is known.
    pub until: Option<String>,
    /// Why, as a code: `held`, `minimum`, or the plan's code for what could
    /// not be established (`undefined-purpose`, `unreadable-sidecar`,
    /// `future-dated`, ...) or what another claim keeps (`claimed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSummary {
    pub id: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub from: String,
    pub to: String,
}

/// The ledger rows this certificate covers, pinned by the last row's hash.
///
/// Format 1 certifies every outcome in `first_seq..=last_seq`. Format 2
/// certifies the outcomes in that range of the runs in `runs` that no
/// earlier certificate certified: concurrent shards of one pass write their
/// outcomes interleaved, and each shard's certificate holds its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerAnchor {
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_row_sha256: String,
    /// Format 2: the runs whose outcomes this certificate certifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<String>>,
    /// Format 2: where the next certificate's range begins, the first
    /// outcome left to another run's certificate (a shard still deleting),
    /// or `last_seq + 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_first_seq: Option<i64>,
}

/// The format of the certificates lethe issues; it verifies 1 and 2.
pub const FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDigest {
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    pub name: String,
    pub url: String,
    /// `permanent` (the store keeps no earlier version after a delete),
    /// `delete-marker`, `soft-deleted` or `unknown`.
    pub deletion_mode: String,
    /// How the mode was established (detected, asserted by the operator, unknown).
    pub deletion_mode_basis: String,
    /// What remains recoverable after a delete, when something may.
    pub caveat: Option<String>,
    pub recordings_deleted: u64,
    pub objects_deleted: u64,
    pub already_absent: u64,
    pub bytes_deleted: u64,
    pub failed: u64,
    /// How this store verified that deleted objects are gone (absent from
    /// certificates issued before lethe verified by listing: a head each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absence_verified_by: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Lines of the manifest: objects verified absent.
    pub items: u64,
    pub recordings_deleted: u64,
    pub objects_deleted: u64,
    pub already_absent: u64,
    pub bytes_deleted: u64,
    pub failed: u64,
}

/// One manifest line: one object verified absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub store: String,
    pub key: String,
    /// `recording`, `sidecar` or `companion`.
    pub role: String,
    pub recording: String,
    pub size: u64,
    pub e_tag: Option<String>,
    pub purposes: Vec<String>,
    pub recorded_at: String,
    pub expires_at: String,
    pub rules: Vec<String>,
    pub purpose: String,
    pub basis: String,
    pub deleted_at: String,
    /// `deleted` or `already-absent`.
    pub result: String,
    pub verification: String,
    pub run_id: String,
    pub ledger_seq: i64,
}

/// The prefix of a manifest's temporary file, in the staging folder.
pub const MANIFEST_TEMP_PREFIX: &str = ".lethe-manifest-";
/// The prefix of a certificate's temporary file, in a certificate folder.
pub const CERT_TEMP_PREFIX: &str = ".lethe-cert-";
/// The prefix of a preflight probe (`pass::preflight`).
pub const PROBE_PREFIX: &str = ".lethe-probe-";

/// Whether `name` (a file name, no folder) is exactly a temporary name lethe
/// itself creates: one of the three prefixes followed by the random part
/// `tempfile` or a probe's UUID gives it (ASCII letters and digits only).
/// A name that only looks like one (`.lethe-manifest-notes.txt`) is not.
pub fn is_own_temporary(name: &str) -> bool {
    [MANIFEST_TEMP_PREFIX, CERT_TEMP_PREFIX, PROBE_PREFIX]
        .iter()
        .filter_map(|p| name.strip_prefix(p))
        .any(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Creates a temporary file in `dir` and holds an exclusive advisory lock
/// on it for as long as the file is open: the lock is what tells the next
/// run's sweep of leftovers (`pass::leftovers`) that a live process is
/// still writing it. A killed process's locks go with it.
pub fn locked_tempfile(dir: &Path, prefix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let file = tempfile::Builder::new().prefix(prefix).tempfile_in(dir)?;
    file.as_file().lock()?;
    Ok(file)
}

/// `lethe-cert-000042.json`.
pub fn certificate_file_name(sequence: u64) -> String {
    format!("lethe-cert-{sequence:06}.json")
}

/// `lethe-cert-000042.manifest.jsonl`.
pub fn manifest_file_name(sequence: u64) -> String {
    format!("lethe-cert-{sequence:06}.manifest.jsonl")
}

/// The manifest beside a certificate file.
pub fn manifest_path_for(certificate: &Path) -> PathBuf {
    let name = certificate
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name.strip_suffix(".json").unwrap_or(name);
    certificate.with_file_name(format!("{stem}.manifest.jsonl"))
}

/// Streams manifest lines into a temporary file in the certificate folder
/// while hashing them and building the Merkle root.
pub struct ManifestWriter {
    out: BufWriter<tempfile::NamedTempFile>,
    sha: Sha256,
    tree: merkle::RootBuilder,
    line: Vec<u8>,
}

/// A finished manifest, not yet published under its final name.
pub struct ManifestDigest {
    pub sha256: String,
    pub merkle_root: String,
    pub lines: u64,
    file: tempfile::NamedTempFile,
}

impl ManifestDigest {
    /// The temporary file holding the finished manifest.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

impl ManifestWriter {
    pub fn create(dir: &Path) -> Result<Self, CertificateError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let file = locked_tempfile(dir, MANIFEST_TEMP_PREFIX).map_err(io_err(dir))?;
        Ok(Self {
            out: BufWriter::new(file),
            sha: Sha256::new(),
            tree: merkle::RootBuilder::new(),
            line: Vec::with_capacity(512),
        })
    }

    pub fn push(&mut self, entry: &ManifestEntry) -> Result<(), CertificateError> {
        self.line.clear();
        jcs::write(entry, &mut self.line).map_err(serde_json::Error::from)?;
        self.tree.push_leaf_data(&self.line);
        self.line.push(b'\n');
        self.sha.update(&self.line);
        let path = self.out.get_ref().path().to_path_buf();
        self.out.write_all(&self.line).map_err(io_err(&path))
    }

    pub fn finish(self) -> Result<ManifestDigest, CertificateError> {
        let path = self.out.get_ref().path().to_path_buf();
        let file = self.out.into_inner().map_err(|e| CertificateError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        file.as_file().sync_all().map_err(io_err(&path))?;
        Ok(ManifestDigest {
            sha256: hex::encode(self.sha.finalize()),
            merkle_root: hex::encode(self.tree.root()),
            lines: self.tree.leaves(),
            file,
        })
    }
}

/// Signs a payload; returns the certificate file's bytes.
pub fn seal(identity: &Identity, payload: &Payload) -> Result<Vec<u8>, CertificateError> {
    let bytes = jcs::to_vec(payload)?;
    Ok(identity.seal(PAYLOAD_TYPE, &bytes).to_file_bytes())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes the manifest, then the certificate, under their final names in
/// `dir` (each via a temporary file and a link that never replaces a file,
/// so that a reader never sees half a file and nothing already there is
/// overwritten). A file already there with the same bytes is accepted (a
/// rebuild after a crash); one with other bytes is an error. Returns the
/// certificate's path.
pub fn publish(
    dir: &Path,
    sequence: u64,
    certificate: &[u8],
    manifest: ManifestDigest,
) -> Result<PathBuf, CertificateError> {
    persist_manifest(manifest, sequence, &dir.join(manifest_file_name(sequence)))?;
    let cert_path = dir.join(certificate_file_name(sequence));
    let mut tmp = locked_tempfile(dir, CERT_TEMP_PREFIX).map_err(io_err(dir))?;
    tmp.write_all(certificate).map_err(io_err(&cert_path))?;
    tmp.as_file().sync_all().map_err(io_err(&cert_path))?;
    persist_new(tmp, &cert_path, sequence, &sha256_hex(certificate))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(cert_path)
}

/// Gives a finished manifest its final name (never replacing a file).
pub fn persist_manifest(
    manifest: ManifestDigest,
    sequence: u64,
    path: &Path,
) -> Result<(), CertificateError> {
    persist_new(manifest.file, path, sequence, &manifest.sha256)
}

/// Links `tmp` to `path` unless a file is there; one with the expected
/// SHA-256 is fine, another is [`CertificateError::Exists`].
fn persist_new(
    tmp: tempfile::NamedTempFile,
    path: &Path,
    sequence: u64,
    expected: &str,
) -> Result<(), CertificateError> {
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            let found = file_sha256(path)?;
            if found == expected {
                return Ok(());
            }
            Err(CertificateError::Exists {
                path: path.to_path_buf(),
                sequence,
                found,
                expected: expected.to_string(),
            })
        }
        Err(e) => Err(CertificateError::Io {
            path: path.to_path_buf(),
            source: e.error,
        }),
    }
}

/// The hex SHA-256 of a file, read in chunks.
pub fn file_sha256(path: &Path) -> Result<String, CertificateError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut sha = Sha256::new();
    std::io::copy(&mut file, &mut sha).map_err(io_err(path))?;
    Ok(hex::encode(sha.finalize()))
}

/// The result of one verification step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Pass(String),
    Fail(String),
    Skip(String),
}

#[derive(Debug, Clone)]
pub struct Verification {
    pub payload: Option<Payload>,
    pub checks: Vec<(&'static str, Check)>,
}

impl Verification {
    /// Whether the certificate, its manifest (when present) and its chain
    /// link (when the previous certificate is present) verify.
    pub fn passed(&self) -> bool {
        self.payload.is_some() && !self.checks.iter().any(|(_, c)| matches!(c, Check::Fail(_)))
    }

    /// Whether the link to the previous certificate was checked: `false`
    /// when that certificate is missing.
    pub fn chain_checked(&self) -> bool {
        !self
            .checks
            .iter()
            .any(|(name, c)| *name == "chain" && matches!(c, Check::Skip(_)))
    }
}

/// Verifies a certificate file: its form, payload type and signature; the
/// payload; the manifest beside it (hash, Merkle root, line count) when it is
/// there; and the link to the previous certificate when that one is there
/// (when it is not, the chain check is [`CHAIN_NOT_CHECKED`] and
/// [`Verification::chain_checked`] says so; the caller decides).
pub fn verify(path: &Path, key: &VerifyingKey) -> Verification {
    verify_showing(path, key, &|p: &Path| p.display().to_string())
}

/// The chain check's message when the previous certificate is missing.
pub const CHAIN_NOT_CHECKED: &str = "chain not checked: previous certificate missing";

/// [`verify`], naming files in its messages through `show` (a certificate
/// fetched from an object store into a temporary folder is named by its URL).
pub fn verify_showing(
    path: &Path,
    key: &VerifyingKey,
    show: &dyn Fn(&Path) -> String,
) -> Verification {
    let mut checks = Vec::new();
    let file = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            checks.push((
                "certificate",
                Check::Fail(format!("cannot read {}: {e}", show(path))),
            ));
            return Verification {
                payload: None,
                checks,
            };
        }
    };
    let (envelope, payload_bytes) = match dsse::open_envelope(&file, PAYLOAD_TYPE, key) {
        Ok(ok) => ok,
        Err(e) => {
            checks.push(("signature", Check::Fail(e.to_string())));
            return Verification {
                payload: None,
                checks,
            };
        }
    };
    checks.push((
        "signature",
        Check::Pass(format!(
            "Ed25519 signature by key {} verifies",
            envelope.signatures[0].keyid
        )),
    ));
    let payload: Payload = match serde_json::from_slice(&payload_bytes) {
        Ok(p) => p,
        Err(e) => {
            checks.push((
                "payload",
                Check::Fail(format!(
                    "the signed payload is not a lethe certificate: {e}"
                )),
            ));
            return Verification {
                payload: None,
                checks,
            };
        }
    };
    let canonical = jcs::to_vec(&payload)
        .map(|c| c == payload_bytes)
        .unwrap_or(false);
    let payload_check = if !canonical {
        Check::Fail("the signed payload is not canonical JSON".into())
    } else if payload.key_id != envelope.signatures[0].keyid {
        Check::Fail(format!(
            "the signature's key id {:?} differs from the signed key id {:?}",
            envelope.signatures[0].keyid, payload.key_id
        ))
    } else if !(payload.certificate == KIND || payload.certificate == RECEIPT_KIND)
        || !(1..=FORMAT).contains(&payload.format)
        || (payload.format >= 2) != payload.ledger.runs.is_some()
    {
        Check::Fail(format!(
            "unknown certificate kind {:?} format {}",
            payload.certificate, payload.format
        ))
    } else {
        Check::Pass(format!(
            "certificate #{} issued {} by run {}",
            payload.sequence, payload.issued_at, payload.run.id
        ))
    };
    checks.push(("payload", payload_check));
    checks.push((
        "manifest",
        verify_manifest(&manifest_path_for(path), &payload, show),
    ));
    checks.push(("chain", verify_chain(path, &payload, show)));
    Verification {
        payload: Some(payload),
        checks,
    }
}

fn verify_manifest(path: &Path, payload: &Payload, show: &dyn Fn(&Path) -> String) -> Check {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::Skip(format!(
                "manifest {} not present: the object list was not checked",
                show(path)
            ));
        }
        Err(e) => return Check::Fail(format!("cannot read manifest {}: {e}", show(path))),
    };
    let mut reader = BufReader::new(file);
    let mut sha = Sha256::new();
    let mut tree = merkle::RootBuilder::new();
    let mut line = Vec::new();
    let mut malformed = None;
    let mut outside = None;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Check::Fail(format!("cannot read manifest: {e}")),
        }
        sha.update(&line);
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        tree.push_leaf_data(content);
        if malformed.is_none() {
            let entry = serde_json::from_slice::<ManifestEntry>(content).ok();
            let ok = entry
                .as_ref()
                .and_then(|e| jcs::to_vec(e).ok())
                .is_some_and(|c| c == content && line.ends_with(b"\n"));
            if !ok {
                malformed = Some(tree.leaves());
            }
            if let Some(e) = entry
                && outside.is_none()
                && !covers(&payload.ledger, &e)
            {
                outside = Some((tree.leaves(), e.run_id, e.ledger_seq));
            }
        }
    }
    let sha = hex::encode(sha.finalize());
    if sha != payload.manifest_sha256 {
        return Check::Fail(format!(
            "manifest SHA-256 is {sha}, the certificate signs {}",
            payload.manifest_sha256
        ));
    }
    let root = hex::encode(tree.root());
    if root != payload.merkle_root {
        return Check::Fail(format!(
            "manifest Merkle root is {root}, the certificate signs {}",
            payload.merkle_root
        ));
    }
    if tree.leaves() != payload.counts.items {
        return Check::Fail(format!(
            "manifest has {} lines, the certificate counts {}",
            tree.leaves(),
            payload.counts.items
        ));
    }
    if let Some(n) = malformed {
        return Check::Fail(format!(
            "manifest line {n} is not a canonical manifest entry"
        ));
    }
    if let Some((n, run, seq)) = outside {
        return Check::Fail(format!(
            "manifest line {n} (run {run}, ledger row {seq}) lies outside what the certificate covers"
        ));
    }
    Check::Pass(format!(
        "{} objects; SHA-256 and Merkle root match",
        tree.leaves()
    ))
}

/// Whether a manifest entry is one the certificate's ledger anchor covers:
/// a row of its range, of one of its runs (format 2).
fn covers(anchor: &LedgerAnchor, entry: &ManifestEntry) -> bool {
    (anchor.first_seq..=anchor.last_seq).contains(&entry.ledger_seq)
        && anchor
            .runs
            .as_ref()
            .is_none_or(|runs| runs.contains(&entry.run_id))
}

fn verify_chain(path: &Path, payload: &Payload, show: &dyn Fn(&Path) -> String) -> Check {
    if payload.sequence <= 1 {
        return match &payload.previous_certificate_sha256 {
            None => Check::Pass("first certificate of the chain".into()),
            Some(_) => Check::Fail("certificate #1 names a previous certificate".into()),
        };
    }
    let Some(expected) = &payload.previous_certificate_sha256 else {
        return Check::Fail(format!(
            "certificate #{} names no previous certificate",
            payload.sequence
        ));
    };
    let previous = path.with_file_name(certificate_file_name(payload.sequence - 1));
    let mut bytes = Vec::new();
    match File::open(&previous).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => {
            let got = sha256_hex(&bytes);
            if &got == expected {
                Check::Pass(format!("links to {}", show(&previous)))
            } else {
                Check::Fail(format!(
                    "{} has SHA-256 {got}, this certificate names {expected}",
                    show(&previous)
                ))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check::Skip(format!(
            "{CHAIN_NOT_CHECKED} ({} is not there)",
            show(&previous)
        )),
        Err(e) => Check::Fail(format!("cannot read {}: {e}", show(&previous))),
    }
}

/// Proof that one manifest line is in a certificate: the line and its audit
/// path to the signed Merkle root. It reveals no other line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// SHA-256 of the certificate file the proof belongs to.
    pub certificate_sha256: String,
    pub sequence: u64,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// The manifest line, exactly (without its newline).
    pub entry: String,
    /// Sibling hashes, leaf to root, hex.
    pub proof: Vec<String>,
}

/// Builds the inclusion proof of the object `key` (in `store`, if given) from
/// a certificate and the manifest beside it.
pub fn prove(certificate: &Path, key: &str, store: Option<&str>) -> Result<InclusionProof, String> {
    let bytes = std::fs::read(certificate)
        .map_err(|e| format!("cannot read {}: {e}", certificate.display()))?;
    let envelope: Envelope =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a certificate: {e}"))?;
    let payload = {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&envelope.payload)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice::<Payload>(&raw)
            .map_err(|e| format!("not a lethe certificate: {e}"))?
    };
    let manifest = manifest_path_for(certificate);
    let file = File::open(&manifest)
        .map_err(|e| format!("a proof needs the manifest {}: {e}", manifest.display()))?;
    let mut leaves = Vec::new();
    let mut found: Option<(usize, String)> = None;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("manifest line {}: {e}", i + 1))?;
        leaves.push(merkle::leaf_hash(line.as_bytes()));
        if found.is_none()
            && let Ok(entry) = serde_json::from_str::<ManifestEntry>(&line)
            && entry.key == key
            && store.is_none_or(|s| s == entry.store)
        {
            found = Some((i, line));
        }
    }
    let (index, entry) = found.ok_or_else(|| {
        format!(
            "{key} is not in the manifest of certificate #{}",
            payload.sequence
        )
    })?;
    let proof = merkle::inclusion_proof(&leaves, index).ok_or("no proof for this index")?;
    Ok(InclusionProof {
        certificate_sha256: sha256_hex(&bytes),
        sequence: payload.sequence,
        leaf_index: index as u64,
        tree_size: leaves.len() as u64,
        entry,
        proof: proof.iter().map(hex::encode).collect(),
    })
}

/// Checks an inclusion proof against a verified certificate.
pub fn check_proof(certificate: &Path, payload: &Payload, proof: &InclusionProof) -> Check {
    let Ok(bytes) = std::fs::read(certificate) else {
        return Check::Fail("cannot read the certificate".into());
    };
    if sha256_hex(&bytes) != proof.certificate_sha256 {
        return Check::Fail("the proof belongs to another certificate".into());
    }
    if proof.tree_size != payload.counts.items {
        return Check::Fail(format!(
            "the proof is for a tree of {} leaves, the certificate signs {}",
            proof.tree_size, payload.counts.items
        ));
    }
    let Ok(root) = hex::decode(&payload.merkle_root) else {
        return Check::Fail("the certificate's Merkle root is not hex".into());
    };
    let Ok(path) = proof
        .proof
        .iter()
        .map(hex::decode)
        .collect::<Result<Vec<_>, _>>()
    else {
        return Check::Fail("the proof's hashes are not hex".into());
    };
    let leaf = merkle::leaf_hash(proof.entry.as_bytes());
    match merkle::verify_inclusion_bytes(proof.leaf_index, proof.tree_size, &leaf, &path, &root) {
        Ok(()) => match serde_json::from_str::<ManifestEntry>(&proof.entry) {
            Ok(e) => Check::Pass(format!(
                "{} in store {} ({}, {}) is certified by the signed Merkle root",
                e.key, e.store, e.result, e.deleted_at
            )),
            Err(_) => Check::Fail("the proven line is not a manifest entry".into()),
        },
        Err(e) => Check::Fail(format!("inclusion proof rejected: {e}")),
    }
}

/// Reads the entries of a manifest, line by line.
pub fn read_manifest(
    path: &Path,
) -> Result<impl Iterator<Item = Result<ManifestEntry, String>>, CertificateError> {
    let file = File::open(path).map_err(io_err(path))?;
    Ok(BufReader::new(file).lines().enumerate().map(|(i, line)| {
        let line = line.map_err(|e| format!("line {}: {e}", i + 1))?;
        serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", i + 1))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(run_id: &str, ledger_seq: i64) -> ManifestEntry {
        ManifestEntry {
            store: "s".into(),
            key: "k".into(),
            role: "recording".into(),
            recording: "k".into(),
            size: 1,
            e_tag: None,
            purposes: vec![],
            recorded_at: String::new(),
            expires_at: String::new(),
            rules: vec![],
            purpose: "p".into(),
            basis: "b".into(),
            deleted_at: String::new(),
            result: "deleted".into(),
            verification: String::new(),
            run_id: run_id.into(),
            ledger_seq,
        }
    }

    #[test]
    fn a_manifest_line_must_lie_in_the_range_and_runs_its_certificate_covers() {
        let mut anchor = LedgerAnchor {
            first_seq: 10,
            last_seq: 20,
            last_row_sha256: String::new(),
            runs: None,
            next_first_seq: None,
        };
        // Format 1: every run of the range.
        assert!(covers(&anchor, &entry("a", 10)) && covers(&anchor, &entry("b", 20)));
        assert!(!covers(&anchor, &entry("a", 9)) && !covers(&anchor, &entry("a", 21)));
        // Format 2: only the runs it lists.
        anchor.runs = Some(vec!["a".into()]);
        assert!(covers(&anchor, &entry("a", 15)));
        assert!(!covers(&anchor, &entry("b", 15)));
        assert!(!covers(&anchor, &entry("a", 21)));
    }
}
