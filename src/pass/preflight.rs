//! Before a run deletes anything, it proves it can write the evidence of
//! what it deletes: the certificate destination accepts a file (a folder:
//! write, fsync, rename, remove; an object store: a put and a delete), the
//! folder manifests are staged in accepts a write, and the signing key signs
//! what its public key verifies. The ledger is proven by the run's own
//! `run-started` row, written in a transaction before recovery (see
//! `Pass::prepare`). Without this, a run whose destination refuses writes
//! would delete every expired recording and only then fail to certify.
//!
//! A probe proves the destination accepts a write at that moment, not that
//! it has room for a manifest of any size: a disk that fills during the run
//! is the case the next run's certificate covers.
//!
//! Probes are named `.lethe-probe-<uuid>`: no certificate's name
//! (`lethe-cert-NNNNNN.json`), and one of lethe's own files for a store the
//! destination lies inside ([`crate::store::is_certificate_file`]), so a
//! probe left by a killed run is never listed, planned or deleted as a
//! recording. Every probe is removed, also when a later step fails.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::destination::Destination;
use crate::certificate::dsse::{EnvelopeError, open_envelope};
use crate::certificate::{Identity, PROBE_PREFIX};
use crate::store::{Store, StoreError, Written};

/// What a probe holds, for whoever finds one a killed run left.
const PROBE_BYTES: &[u8] =
    b"lethe preflight probe: written and removed before a run deletes anything; safe to delete\n";

/// The payload type of the signing probe: DSSE binds the type into what is
/// signed, so a probe's signature can never pass for a certificate's.
const PROBE_TYPE: &str = "application/vnd.lethe.preflight-probe.v1+json";

/// Which piece of the run's evidence cannot be written, and why.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The certificate folder refused one step of writing a file.
    #[error("the certificate destination {} does not accept a file: cannot {step}", path.display())]
    Folder {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
    /// The certificate object store refused the probe's put or its delete.
    #[error("the certificate destination {location} does not accept an object: cannot {step}")]
    Store {
        location: String,
        step: &'static str,
        source: Box<StoreError>,
    },
    /// A fresh probe name was reported as taken: the store's create-new
    /// write cannot be relied on.
    #[error(
        "the certificate destination {location} answered that a new object already exists; its create-never-replace write cannot be relied on"
    )]
    StoreExists { location: String },
    /// The folder manifests are written in before they are published.
    #[error("the manifest staging folder {} does not accept a file: cannot {step}", path.display())]
    Staging {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
    /// The signing key's signature does not verify with its public key.
    #[error("the signing key {key_id} does not produce a signature its public key verifies")]
    Key {
        key_id: String,
        source: EnvelopeError,
    },
}

/// Proves that the run's certificate and its manifest can be written and
/// signed. Nothing is left behind, whatever the outcome.
pub(super) async fn check(
    destination: &Destination,
    identity: &Identity,
) -> Result<(), PreflightError> {
    match destination {
        // A folder destination stages its manifests in itself: one probe
        // proves both.
        Destination::Folder(dir) => {
            probe_folder(dir).map_err(|(step, source)| PreflightError::Folder {
                path: dir.clone(),
                step,
                source,
            })?
        }
        Destination::Store { store, .. } => {
            let staging = destination.staging();
            probe_folder(&staging).map_err(|(step, source)| PreflightError::Staging {
                path: staging.clone(),
                step,
                source,
            })?;
            probe_store(store, destination).await?;
        }
    }
    probe_key(identity)
}

/// Writes a probe the way a certificate is written (a temporary file in the
/// folder, fsync, a rename that never replaces), then removes it.
fn probe_folder(dir: &Path) -> Result<(), (&'static str, std::io::Error)> {
    std::fs::create_dir_all(dir).map_err(|e| ("create the folder", e))?;
    // The temporary file removes itself if a step below fails; its lock,
    // held until the probe is removed, keeps another run's sweep of
    // leftovers away from it.
    let mut tmp =
        crate::certificate::locked_tempfile(dir, PROBE_PREFIX).map_err(|e| ("create a file", e))?;
    tmp.write_all(PROBE_BYTES)
        .map_err(|e| ("write a file", e))?;
    tmp.as_file().sync_all().map_err(|e| ("fsync a file", e))?;
    let target = dir.join(format!("{PROBE_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    let _held = tmp
        .persist_noclobber(&target)
        .map_err(|e| ("rename a file", e.error))?;
    // Nothing can fail between the rename and the removal: the folder's
    // own fsync is best-effort, as when a certificate is published.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    std::fs::remove_file(&target).map_err(|e| ("remove a file", e))
}

/// Puts a probe object with the create-never-replace write certificates
/// use, then deletes it; the delete is sent after a failed put too, since a
/// put that timed out may still have landed.
async fn probe_store(store: &Store, destination: &Destination) -> Result<(), PreflightError> {
    let name = format!("{PROBE_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let location = || destination.describe();
    let put = store.put_new(&name, PROBE_BYTES.to_vec()).await;
    let removed = store.delete(&name).await;
    match (put, removed) {
        (Err(source), _) => Err(PreflightError::Store {
            location: location(),
            step: "put an object",
            source: Box::new(source),
        }),
        (Ok(Written::Exists), _) => Err(PreflightError::StoreExists {
            location: location(),
        }),
        (Ok(Written::Created), Err(source)) => Err(PreflightError::Store {
            location: location(),
            step: "delete the object it put",
            source: Box::new(source),
        }),
        (Ok(Written::Created), Ok(_)) => Ok(()),
    }
}

/// Signs a probe with the run's key and verifies it with its public key,
/// through the same envelope code certificates go through.
fn probe_key(identity: &Identity) -> Result<(), PreflightError> {
    let file = identity.seal(PROBE_TYPE, PROBE_BYTES).to_file_bytes();
    open_envelope(&file, PROBE_TYPE, &identity.verifying_key())
        .map(|_| ())
        .map_err(|source| PreflightError::Key {
            key_id: identity.key_id().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_folder_passes_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certificates");
        probe_folder(&certs).unwrap();
        assert_eq!(std::fs::read_dir(&certs).unwrap().count(), 0);
    }

    #[test]
    fn a_folder_under_a_file_fails_at_creating_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let (step, e) = probe_folder(&dir.path().join("file/sub")).unwrap_err();
        assert_eq!(step, "create the folder");
        assert_eq!(e.kind(), std::io::ErrorKind::NotADirectory);
    }

    #[test]
    fn a_key_signs_what_its_public_key_verifies() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        probe_key(&Identity::from_key(key, "k")).unwrap();
    }

    #[test]
    fn a_probe_is_one_of_lethes_own_files_and_no_certificate() {
        let name = format!("{PROBE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        assert!(crate::store::is_certificate_file(&name));
        assert!(!name.starts_with("lethe-cert-"));
    }
}
