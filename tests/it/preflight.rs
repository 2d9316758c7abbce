//! Before its first delete (the completion of an interrupted run's
//! deletions included), a run proves it can write its evidence: a
//! certificate destination that cannot take a file (a folder under a file,
//! a full disk, a read-only mount, an object store that refuses puts) stops
//! it with exit 1 and nothing deleted, the failed run on record; the probe
//! it writes is never left behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::cloud::{Bucket, Kind};
use crate::crash::crashed_run;
use crate::*;

/// The error every refusal of the preflight starts with.
const STOPPED: &str = "preflight: the run cannot write its evidence; nothing was deleted";

/// A world with three expired recordings, which a run deletes.
fn world_with_expired() -> (World, Vec<String>) {
    let w = World::new();
    let keys: Vec<String> = ["A", "B", "C"]
        .iter()
        .map(|n| format!("calls/quality/{}/{n}.wav", months_ago(30)))
        .collect();
    for k in &keys {
        w.put(k, "audio");
    }
    (w, keys)
}

/// The ledger rows that are not a run's start or end (intents, outcomes,
/// certificates), counted.
fn evidence_rows(w: &World) -> String {
    w.sql("SELECT COUNT(*) FROM ledger WHERE kind NOT IN ('run-started', 'run-finished')")
}

/// The run was stopped by the preflight: exit 1, an error naming what
/// failed, every recording still there, no row but the run's own start and
/// end added to the ledger, and that run on record as failed.
fn assert_stopped(w: &World, out: &Output, keys: &[String], rows_before: &str, says: &[&str]) {
    for k in keys {
        assert!(w.exists(k), "{k} was deleted:\n{}", stderr(out));
    }
    assert_exit(out, 1);
    let err = stderr(out);
    for s in says.iter().chain([&STOPPED]) {
        assert!(err.contains(s), "stderr does not say {s:?}:\n{err}");
    }
    assert_eq!(evidence_rows(w), rows_before, "rows beside the run's own");
    // The ledger's last two rows: the stopped run's start and its failed end.
    let last = w.sql("SELECT kind, run_id, body FROM ledger ORDER BY seq DESC LIMIT 2");
    let last: Vec<Vec<&str>> = last.lines().map(|l| l.splitn(3, '|').collect()).collect();
    assert_eq!(
        (last[0][0], last[1][0], last[0][1]),
        ("run-finished", "run-started", last[1][1]),
        "{last:?}"
    );
    assert!(last[0][2].contains("\"status\":\"failed\""), "{last:?}");
}

/// The names in a folder, sorted.
pub(crate) fn names(dir: &Path) -> Vec<String> {
    sorted(
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
    )
}

/// A run deletes the recordings and issues certificate #1 into
/// `certificates/`, which then holds nothing but its files; the ledger
/// (with the stopped runs in it) verifies.
fn assert_certifies(w: &World, keys: &[String]) {
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    for k in keys {
        assert!(!w.exists(k), "{k} is still there");
    }
    assert_eq!(
        names(&w.path("certificates")),
        ["lethe-cert-000001.json", "lethe-cert-000001.manifest.jsonl"],
        "the destination holds the certificate and its manifest, no probe"
    );
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_folder_under_a_file_stops_the_run_before_any_deletion() {
    let (mut w, keys) = world_with_expired();
    w.write("not-a-folder", "a file");
    w.certificates = "\"not-a-folder/certificates\"".into();
    w.write_config();
    let out = w.lethe(&["run"]);
    let folder = w.path("not-a-folder/certificates");
    assert_stopped(
        &w,
        &out,
        &keys,
        "0",
        &[
            &format!(
                "the certificate destination {} does not accept a file: cannot create the folder",
                folder.display()
            ),
            "Not a directory",
        ],
    );
    // The path fixed, the next run deletes and certifies.
    w.certificates = "\"certificates\"".into();
    w.write_config();
    assert_certifies(&w, &keys);
}

/// A tmpfs mounted on a folder, unmounted when dropped, also when the test
/// fails (declare it after the `World` whose folder it is in: it is then
/// dropped first).
pub(crate) struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None`, with the reason printed, where this machine does not let
    /// the test mount (it needs root, or CAP_SYS_ADMIN).
    pub(crate) fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        let reason = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run mount: {e}"),
        };
        // Written past the test harness's capture, so that a skip is seen.
        let test = std::thread::current().name().unwrap_or("?").to_string();
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
        None
    }

    pub(crate) fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount,{options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.0).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Fills the file system `dir` is on to the brim with `dir/fill`.
pub(crate) fn fill(dir: &Path) {
    let mut file = std::fs::File::create(dir.join("fill")).unwrap();
    let chunk = [0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    drop(file);
    let probe = dir.join("room");
    assert!(
        std::fs::write(&probe, b"x").is_err(),
        "the disk is not full"
    );
    let _ = std::fs::remove_file(probe);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_certificate_disk_stops_the_run_before_any_deletion() {
    let (w, keys) = world_with_expired();
    let certs = w.path("certificates");
    let Some(_tmpfs) = Tmpfs::mount(&certs, "64k") else {
        return;
    };
    fill(&certs);
    let out = w.lethe(&["run"]);
    assert_stopped(
        &w,
        &out,
        &keys,
        "0",
        &[
            &format!(
                "the certificate destination {} does not accept a file",
                certs.display()
            ),
            "No space left on device",
        ],
    );
    assert_eq!(names(&certs), ["fill"], "the probe was removed");
    // Room again: the next run deletes and certifies.
    std::fs::remove_file(certs.join("fill")).unwrap();
    assert_certifies(&w, &keys);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_certificate_folder_stops_the_run_before_any_deletion() {
    let (w, keys) = world_with_expired();
    let certs = w.path("certificates");
    let Some(tmpfs) = Tmpfs::mount(&certs, "1m") else {
        return;
    };
    // chmod does not stop root: a read-only mount does.
    tmpfs.remount("ro");
    let out = w.lethe(&["run"]);
    assert_stopped(
        &w,
        &out,
        &keys,
        "0",
        &[
            &format!(
                "the certificate destination {} does not accept a file: cannot create a file",
                certs.display()
            ),
            "Read-only file system",
        ],
    );
    tmpfs.remount("rw");
    assert!(names(&certs).is_empty());
    assert_certifies(&w, &keys);
}

/// Points `w`'s certificates at `prefix` of `bucket`, named `name` in the URL.
pub(crate) fn certificates_on_s3(w: &mut World, bucket: &Bucket, name: &str) -> String {
    let (url, options) = bucket.url_and_options("certs");
    let url = url.replace(&bucket.name, name);
    w.certificates = format!("\"{url}\"");
    w.tail = format!("\n[certificates_options]\n{options}");
    w.env = bucket.env();
    w.write_config();
    url
}

/// Back to the default: a local `certificates` folder.
fn certificates_in_a_folder(w: &mut World) {
    w.certificates = "\"certificates\"".into();
    w.tail.clear();
    w.write_config();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_store_destination_refusing_puts_stops_the_run_before_any_deletion() {
    let (mut w, keys) = world_with_expired();
    // A bucket that lists and reads, but refuses every put.
    let bucket = Bucket::s3_refusing_puts().await;
    let url = certificates_on_s3(&mut w, &bucket, &bucket.name.clone());
    let out = w.lethe(&["run"]);
    assert_stopped(
        &w,
        &out,
        &keys,
        "0",
        &[
            &format!(
                "the certificate destination {url} does not accept an object: cannot put an object"
            ),
            "MissingUploadObjectWithObjectLockHeaders",
        ],
    );
    assert!(
        bucket.keys().await.is_empty(),
        "the probe is not left behind"
    );

    // A bucket that does not exist at all.
    let missing = format!("{}-missing", bucket.name);
    let url = certificates_on_s3(&mut w, &bucket, &missing);
    let out = w.lethe(&["run"]);
    assert_stopped(
        &w,
        &out,
        &keys,
        "0",
        &[&format!(
            "the certificate destination {url} does not accept an object: cannot put an object"
        )],
    );

    certificates_in_a_folder(&mut w);
    assert_certifies(&w, &keys);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_runs_deletions_are_not_completed_when_the_preflight_fails() {
    let mut w = World::new();
    let dir = format!("calls/quality/{}", months_ago(30));
    let (rec, sidecar, companion) = (
        format!("{dir}/C-1.wav"),
        format!("{dir}/C-1.json"),
        "transcripts/C-1.txt".to_string(),
    );
    let other = format!("{dir}/C-2.wav");
    for k in [&rec, &sidecar, &companion, &other] {
        w.put(k, "{}");
    }
    crashed_run(&w, &[(&rec, &[&sidecar, &companion]), (&other, &[])]).await;
    // Killed after deleting the recording, before its sidecar and companion.
    std::fs::remove_file(w.store().join(&rec)).unwrap();
    let pending = w.sql("SELECT COUNT(*) FROM pending_intent");
    assert_eq!(pending, "4");
    let rows = evidence_rows(&w);

    let bucket = Bucket::s3_refusing_puts().await;
    certificates_on_s3(&mut w, &bucket, &bucket.name.clone());
    let out = w.lethe(&["run"]);
    let left = [sidecar.clone(), companion.clone(), other.clone()];
    assert_stopped(&w, &out, &left, &rows, &["cannot put an object"]);
    assert_eq!(w.sql("SELECT COUNT(*) FROM pending_intent"), pending);

    // With a destination that takes files, the next run completes them.
    certificates_in_a_folder(&mut w);
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("completed an interrupted run"),
        "{}",
        stdout(&out)
    );
    for k in &left {
        assert!(!w.exists(k), "{k} is still there");
    }
    assert_eq!(w.sql("SELECT COUNT(*) FROM pending_intent"), "0");
    assert_eq!(
        sorted(w.manifest_keys(1)),
        sorted(vec![rec, sidecar, companion, other])
    );
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_leaves_only_certificates_in_a_folder_destination() {
    let (w, keys) = world_with_expired();
    assert_certifies(&w, &keys);
    w.put(&keys[0], "audio");
    assert_exit(&w.lethe(&["run"]), 0);
    assert_eq!(
        names(&w.path("certificates")),
        [
            "lethe-cert-000001.json",
            "lethe-cert-000001.manifest.jsonl",
            "lethe-cert-000002.json",
            "lethe-cert-000002.manifest.jsonl"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_leaves_only_certificates_in_an_object_store_destination() {
    let (mut w, keys) = world_with_expired();
    let bucket = Bucket::new(Kind::S3).await;
    certificates_on_s3(&mut w, &bucket, &bucket.name.clone());
    let tmp = tempfile::tempdir().unwrap();
    let mut run = w.command(&["run"]);
    run.env("TMPDIR", tmp.path());
    let out = run.output().unwrap();
    assert_exit(&out, 0);
    for k in &keys {
        assert!(!w.exists(k), "{k} is still there");
    }
    assert_eq!(
        bucket.keys().await.into_iter().collect::<Vec<_>>(),
        [
            "certs/lethe-cert-000001.json",
            "certs/lethe-cert-000001.manifest.jsonl"
        ]
    );
    assert!(names(tmp.path()).is_empty(), "nothing is left in TMPDIR");
}
