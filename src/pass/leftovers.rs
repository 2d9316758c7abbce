//! Temporaries a killed run left behind. A run killed while it publishes a
//! certificate (or during its preflight) leaves its temporary files where
//! it wrote them: `.lethe-manifest-*` in the manifest staging folder (the
//! certificate folder, or `TMPDIR` for an object-store destination),
//! `.lethe-cert-*` in a certificate folder, `.lethe-probe-*` in either and
//! in an object-store destination. Nothing ever reads them again; a large
//! manifest's can fill the disk the next preflight needs. So a run removes
//! them when it starts, before its preflight.
//!
//! Only names lethe creates are touched ([`certificate::is_own_temporary`]:
//! a prefix followed by letters and digits only), only regular files (never
//! a folder or a link), only those last modified before the run started,
//! and, in a folder, only those no live process holds locked: every
//! temporary lethe writes is locked by its writer for as long as it is open
//! ([`certificate::locked_tempfile`]), so a concurrent run's (a shard's, or
//! another installation's sharing `TMPDIR`) is left alone. An object
//! cannot be locked: a probe object another run is about to delete is
//! harmless to delete first, and lethe puts no other temporary object.
//!
//! A leftover that cannot be removed is a warning, not a failure of the
//! run: it holds no evidence and the next run tries again.

use std::path::Path;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tracing::{info, warn};

use super::destination::Destination;
use crate::certificate;
use crate::store::Listed;

/// At most this many removals are logged one by one; the rest are counted.
const LOGGED: usize = 20;

/// What a sweep removed and what it could not.
#[derive(Debug, Default)]
pub(super) struct Sweep {
    /// Locations (paths or URLs) of the removed temporaries.
    pub removed: Vec<String>,
    /// Locations that could not be removed, with why.
    pub failed: Vec<(String, String)>,
}

impl Sweep {
    fn removed(&mut self, location: String) {
        if self.removed.len() < LOGGED {
            info!(file = %location, "removed a temporary file a killed run left");
        }
        self.removed.push(location);
    }

    fn failed(&mut self, location: String, error: String) {
        warn!(file = %location, error = %error, "cannot remove a temporary file a killed run left; the next run tries again");
        self.failed.push((location, error));
    }
}

/// Removes the leftovers of killed runs from the destination and its
/// staging folder: lethe's own temporaries older than `started` (the run's
/// start) that no live process holds.
pub(super) async fn sweep(destination: &Destination, started: DateTime<Utc>) -> Sweep {
    let mut sweep = Sweep::default();
    sweep_folder(&destination.staging(), started, &mut sweep);
    if let Destination::Store { store, .. } = destination {
        let mut listing = store.list();
        let mut stale = Vec::new();
        while let Some(entry) = listing.next().await {
            match entry {
                Ok(Listed::Object(meta)) => {
                    let key = meta.location.as_ref();
                    if !key.contains('/')
                        && certificate::is_own_temporary(key)
                        && meta.last_modified < started
                    {
                        stale.push(key.to_string());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    sweep.failed(destination.describe(), format!("cannot list it: {e}"));
                    break;
                }
            }
        }
        drop(listing);
        for key in stale {
            match store.delete(&key).await {
                Ok(_) => sweep.removed(destination.location(&key)),
                Err(e) => sweep.failed(destination.location(&key), e.to_string()),
            }
        }
    }
    if sweep.removed.len() > LOGGED || !sweep.failed.is_empty() {
        info!(
            removed = sweep.removed.len(),
            not_removed = sweep.failed.len(),
            "swept the temporary files killed runs left"
        );
    }
    sweep
}

/// The folder part: lethe's temporaries there, older than `started`, that
/// no live process holds locked. A folder that does not exist holds none.
fn sweep_folder(dir: &Path, started: DateTime<Utc>, sweep: &mut Sweep) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            return sweep.failed(dir.display().to_string(), format!("cannot read it: {e}"));
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !certificate::is_own_temporary(name) {
            continue;
        }
        let path = entry.path();
        // The entry's own metadata: a link is not followed, and is no file.
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .is_ok_and(|m| DateTime::<Utc>::from(m) < started);
        if !meta.is_file() || !old {
            continue;
        }
        match remove_unless_held(&path) {
            Ok(true) => sweep.removed(path.display().to_string()),
            Ok(false) => {}
            Err(e) => sweep.failed(path.display().to_string(), e.to_string()),
        }
    }
}

/// Removes `path` if no process holds its lock (the writer's, see
/// [`certificate::locked_tempfile`]); `false` if one does. The lock is held
/// across the removal, so a writer cannot take the file back in between.
fn remove_unless_held(path: &Path) -> std::io::Result<bool> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        // Gone meanwhile: its writer published or removed it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// A file in `dir` last modified an hour ago.
    fn old_file(dir: &Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let f = std::fs::File::create(&path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .unwrap();
        path
    }

    fn started() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_003_600, 0).unwrap()
    }

    #[test]
    fn only_lethes_own_temporary_names_count() {
        for own in [
            ".lethe-manifest-a1B2c3",
            ".lethe-cert-XyZ123",
            ".lethe-probe-0123456789abcdef0123456789abcdef",
        ] {
            assert!(certificate::is_own_temporary(own), "{own}");
        }
        for other in [
            "lethe-manifest-notes.txt",
            ".lethe-manifest-notes.txt",
            ".lethe-manifest-",
            ".lethe-cert-000001.json",
            "lethe-cert-000001.json",
            "lethe-cert-000001.manifest.jsonl",
            ".lethe-probe-a/b",
            ".lethe-probe-ä",
            "x.lethe-cert-abc",
            ".lethe-certabc",
        ] {
            assert!(!certificate::is_own_temporary(other), "{other}");
        }
    }

    #[test]
    fn a_sweep_removes_old_unheld_temporaries_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let gone = [
            old_file(d, ".lethe-manifest-abc123"),
            old_file(d, ".lethe-cert-Q9z8Y7"),
            old_file(d, ".lethe-probe-00ff"),
        ];
        let kept = [
            old_file(d, "lethe-manifest-notes.txt"),
            old_file(d, ".lethe-manifest-notes.txt"),
            old_file(d, "lethe-cert-000001.json"),
            old_file(d, "lethe-cert-000001.manifest.jsonl"),
        ];
        // A fresh one (written after the run started) stays.
        let fresh = d.join(".lethe-manifest-fresh1");
        std::fs::write(&fresh, "x").unwrap();
        // One a live process holds stays, however old.
        let held_path = old_file(d, ".lethe-manifest-held01");
        let held = std::fs::File::open(&held_path).unwrap();
        held.lock().unwrap();
        // A folder and a link with a temporary's name stay.
        std::fs::create_dir(d.join(".lethe-cert-folder1")).unwrap();
        std::os::unix::fs::symlink(&kept[0], d.join(".lethe-probe-link01")).unwrap();

        let mut sweep = Sweep::default();
        let now = crate::clock::SystemClock::read() + chrono::Duration::seconds(60);
        // Every file above but `fresh` is older than `started()`; `fresh`
        // is older than `now` only, so first sweep as of `started()`.
        sweep_folder(d, started(), &mut sweep);
        assert_eq!(sweep.removed.len(), 3, "{sweep:?}");
        assert!(sweep.failed.is_empty(), "{sweep:?}");
        for p in &gone {
            assert!(!p.exists(), "{}", p.display());
        }
        for p in kept.iter().chain([&fresh, &held_path]) {
            assert!(p.exists(), "{}", p.display());
        }
        assert!(d.join(".lethe-cert-folder1").is_dir());
        assert!(d.join(".lethe-probe-link01").symlink_metadata().is_ok());
        assert!(kept[0].exists());

        // Once the holder is gone (a killed writer), its file goes too.
        drop(held);
        let mut sweep = Sweep::default();
        sweep_folder(d, now, &mut sweep);
        assert!(!held_path.exists());
        assert!(!fresh.exists());
        assert_eq!(sweep.removed.len(), 2, "{sweep:?}");
    }

    #[test]
    fn a_missing_folder_holds_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let mut sweep = Sweep::default();
        sweep_folder(&dir.path().join("absent"), started(), &mut sweep);
        assert!(sweep.removed.is_empty() && sweep.failed.is_empty());
    }
}
