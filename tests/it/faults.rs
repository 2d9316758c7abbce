//! Store faults: S3 (moto), Azure Blob (Azurite) and GCS (fake-gcs-server)
//! behind the fault-injecting client (`[stores.inject_faults]`,
//! `src/store/faults.rs`), across many seeds.
//! Transient errors, throttling, timeouts, slow answers, lost replies,
//! partial bulk-delete failures and range listings that hide a present key
//! may make a run fail, never make it delete what it must keep, certify what
//! still exists, or leave a companion or sidecar of a deleted recording
//! behind unreported; whatever failed is reported with exit 1 and finished by
//! the next run.
//!
//! `LETHE_FAULT_SEEDS` sets the number of seeds (CI: 8; long mode: 100).

use std::collections::BTreeSet;

use crate::cloud::{Bucket, Kind};
use crate::*;

/// Where a seed's corpus lives: a bucket of one emulator, or the world's
/// local folder (faulted as a disk: EIO, ENOSPC).
enum Target {
    Cloud(Bucket),
    Local(std::path::PathBuf),
}

impl Target {
    async fn new(seed: u64, w: &World) -> Self {
        match seed % 4 {
            0 => Target::Cloud(Bucket::new(Kind::S3).await),
            1 => Target::Cloud(Bucket::new(Kind::Azure).await),
            2 => Target::Cloud(Bucket::new(Kind::Gcs).await),
            _ => Target::Local(w.store()),
        }
    }

    fn name(&self) -> String {
        match self {
            Target::Cloud(b) => format!("{:?}", b.kind),
            Target::Local(_) => "Local".into(),
        }
    }

    async fn put(&self, key: &str, body: &str) {
        match self {
            Target::Cloud(b) => b.put(&format!("tenant-a/{key}"), body).await,
            Target::Local(root) => {
                let p = root.join(key);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, body).unwrap();
            }
        }
    }

    /// Every key, relative to the store.
    async fn keys(&self) -> BTreeSet<String> {
        match self {
            Target::Cloud(b) => b
                .keys()
                .await
                .iter()
                .filter_map(|k| k.strip_prefix("tenant-a/").map(str::to_string))
                .collect(),
            Target::Local(root) => walk(root, root),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        match self {
            Target::Cloud(b) => b.env(),
            Target::Local(_) => vec![],
        }
    }

    /// The store's table; `faults` is appended as its `[stores.inject_faults]`.
    fn store_toml(&self, faults: Option<String>) -> String {
        let store = match self {
            // moto lists in key order: the scan infers absent sidecars, as
            // on AWS; Azurite and fake-gcs keep their kinds' defaults.
            Target::Cloud(b) if b.kind == Kind::S3 => b.store_toml(
                "recordings",
                "tenant-a",
                "listing_order = \"lexicographic\"\n",
            ),
            Target::Cloud(b) => b.store_toml("recordings", "tenant-a", ""),
            Target::Local(_) => LOCAL_STORE.to_string(),
        };
        match faults {
            Some(f) => format!("{store}[stores.inject_faults]\n{f}"),
            None => store,
        }
    }
}

fn walk(root: &std::path::Path, dir: &std::path::Path) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            keys.extend(walk(root, &path));
        } else {
            let rel = path.strip_prefix(root).unwrap();
            keys.insert(rel.to_str().unwrap().to_string());
        }
    }
    keys
}

struct Corpus {
    expired: BTreeSet<String>,
    kept: BTreeSet<String>,
    /// Each expired recording's sidecar and companion, by recording.
    owned: Vec<(String, String)>,
}

async fn corpus(target: &Target) -> Corpus {
    let old = months_ago(8);
    let new = months_ago(2);
    let mut expired = BTreeSet::new();
    let mut kept = BTreeSet::new();
    let mut owned = Vec::new();
    for i in 0..40 {
        let rec = format!("calls/quality/{old}/E-{i:03}.wav");
        expired.insert(rec.clone());
        if i % 2 == 0 {
            expired.insert(format!("transcripts/E-{i:03}.txt"));
            owned.push((rec.clone(), format!("transcripts/E-{i:03}.txt")));
        }
        if i % 5 == 0 {
            expired.insert(rec.replace(".wav", ".json"));
            owned.push((rec.clone(), rec.replace(".wav", ".json")));
        }
    }
    for i in 0..5 {
        // Expired for quality, kept for disputes by their sidecar.
        let rec = format!("calls/quality/{old}/D-{i:03}.wav");
        kept.insert(rec.clone());
        kept.insert(rec.replace(".wav", ".json"));
        // Held by a legal hold.
        kept.insert(format!("calls/quality/{old}/H-{i:03}.wav"));
        kept.insert(format!("calls/quality/{new}/N-{i:03}.wav"));
        kept.insert(format!("calls/quality/2099/01/01/F-{i:03}.wav"));
    }
    for k in expired.iter().chain(kept.iter()) {
        let body = if k.contains("/D-") && k.ends_with(".json") {
            r#"{"purposes":["disputes"]}"#
        } else if k.ends_with(".json") {
            r#"{"purposes":["quality"]}"#
        } else {
            "audio"
        };
        target.put(k, body).await;
    }
    Corpus {
        expired,
        kept,
        owned,
    }
}

fn injected_faults(o: &std::process::Output) -> usize {
    stderr(o).matches("injected fault").count()
}

/// Keys a range listing hid (`hide`), by the run's log.
fn hidden_keys(o: &std::process::Output) -> usize {
    stderr(o)
        .lines()
        .filter(|l| l.contains("injected fault") && l.contains("hide"))
        .count()
}

#[tokio::test]
async fn no_store_fault_leads_to_a_wrongful_or_uncertified_deletion() {
    let seeds: u64 = std::env::var("LETHE_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let (mut faults_total, mut failed_first_runs, mut retried) = (0, 0, 0);
    let (mut hidden_total, mut orphans_reported) = (0, 0);
    let mut kinds = std::collections::BTreeMap::new();
    for seed in 0..seeds {
        // Each kind of store in turn, each at every fault scale.
        let mut w = World::new();
        let target = Target::new(seed, &w).await;
        let kind = target.name();
        kinds.entry(kind.clone()).or_insert((0, 0)).0 += 1;
        let c = corpus(&target).await;
        w.env = target.env();
        w.safety = "max_deletions = 1000000\nmax_fraction = 1.0\n".into();
        // At full scale a quarter of requests meet some fault and a fifth of
        // the keys of a bulk delete fail alone; every third seed is gentler.
        // A cloud store's range listings also hide a present key now and
        // then (a local folder is checked with a stat, never a range listing).
        let k = [1.0, 0.5, 0.05][((seed / 4) % 3) as usize];
        let hide = match target {
            Target::Cloud(_) => format!("hide = {}\n", 0.5 * k),
            Target::Local(_) => String::new(),
        };
        w.stores = target.store_toml(Some(format!(
            "seed = {seed}\nerror = {}\nthrottle = {}\ntimeout = {}\nlost_reply = {}\nslow = {}\npartial = {}\ndelay = \"20ms\"\n{hide}",
            0.08 * k,
            0.06 * k,
            0.03 * k,
            0.05 * k,
            0.03 * k,
            0.2 * k,
        )));
        w.write_config();
        let old = months_ago(8);
        assert_exit(
            &w.lethe(&[
                "hold",
                "place",
                "--by",
                "j.kowalska",
                "--reason",
                "court case",
                "--case",
                "CASE-1",
                "--store",
                "recordings",
                "--prefix",
                &format!("calls/quality/{old}/H-"),
            ]),
            0,
        );

        let first = w.lethe(&["run"]);
        let faults = injected_faults(&first);
        faults_total += faults;
        hidden_total += hidden_keys(&first);
        kinds.get_mut(&kind).unwrap().1 += faults;
        let code = code(&first);
        assert!(
            code == 0 || code == 1,
            "seed {seed} ({kind}): exit {code}\n{}",
            stderr(&first)
        );
        let present = target.keys().await;
        for k in &c.kept {
            assert!(
                present.contains(k),
                "seed {seed} ({kind}): {k} was wrongly deleted"
            );
        }
        for k in w.all_certified() {
            assert!(
                !present.contains(&k),
                "seed {seed} ({kind}): certified {k} still exists"
            );
        }
        // A sidecar or companion whose recording is gone has no listing left
        // to lead back to it: if it is still there, the ledger keeps its
        // intent open (failed, skipped or unconfirmed) for the next run.
        for (recording, object) in &c.owned {
            if present.contains(recording) || !present.contains(object) {
                continue;
            }
            let open = w.sql(&format!(
                "SELECT COUNT(*) FROM pending_intent p JOIN ledger l ON l.seq = p.seq WHERE l.object_key = '{object}'"
            ));
            assert_eq!(
                open,
                "1",
                "seed {seed} ({kind}): {recording} was deleted, {object} is left behind and no pending intent says so\n{}",
                stderr(&first)
            );
            orphans_reported += 1;
        }
        let left: Vec<&String> = c.expired.intersection(&present).collect();
        if !left.is_empty() {
            retried += left.len();
            assert_eq!(
                code,
                1,
                "seed {seed} ({kind}): {} expired objects remain ({:?}...), yet the run said it succeeded\n{}",
                left.len(),
                left.first(),
                stderr(&first)
            );
        }
        if code == 1 {
            failed_first_runs += 1;
        }

        // Without faults, the next run finishes the work and certifies each
        // object exactly once.
        w.stores = target.store_toml(None);
        w.write_config();
        let second = w.lethe(&["run"]);
        assert_exit(&second, 0);
        let present = target.keys().await;
        let expected: BTreeSet<String> = c.kept.clone();
        let history: Vec<String> = present
            .difference(&expected)
            .map(|k| {
                w.sql(&format!(
                    "SELECT seq, kind, body FROM ledger WHERE object_key = '{k}' ORDER BY seq"
                ))
            })
            .collect();
        assert_eq!(
            present,
            expected,
            "seed {seed} ({kind}): after the second run; ledger of the objects left:\n{}\n--- first run\n{}\n--- second run\n{}",
            history.join("\n"),
            stderr(&first),
            stderr(&second)
        );
        let all = w.all_certified();
        let unique: BTreeSet<String> = all.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            all.len(),
            "seed {seed} ({kind}): certified twice"
        );
        assert_eq!(unique, c.expired, "seed {seed} ({kind}): certified set");
        for n in 1.. {
            if !w.cert(n).exists() {
                break;
            }
            assert_exit(
                &w.lethe(&["verify", w.cert(n).to_str().unwrap(), "--check-store"]),
                0,
            );
        }
        assert_exit(&w.lethe(&["ledger", "verify"]), 0);
        assert_eq!(w.sql("SELECT COUNT(*) FROM pending_intent"), "0");
    }
    eprintln!(
        "fault suite: {seeds} seeds (kind: (seeds, faults) {kinds:?}), {faults_total} faults injected ({hidden_total} keys hidden from range listings), {failed_first_runs} first runs failed (exit 1), {retried} objects finished by the next run ({orphans_reported} sidecars or companions of deleted recordings left pending), 0 wrongful deletions"
    );
    assert!(
        kinds.values().all(|&(_, faults)| faults > 0),
        "the faults were never injected on some kind: {kinds:?}"
    );
    assert!(
        seeds < 4 || hidden_total > 0,
        "no range listing ever hid a key: the suite misses the case"
    );
}

/// The certificate destination (S3 on moto) behind faults: puts that fail,
/// time out, or are carried out while an error comes back, and checks and
/// listings that fail. A run may stop before deleting (the preflight, the
/// destination check) or delete and then fail to publish its certificate
/// (exit 1); never does a run claim success with a certificate missing,
/// never is an object that exists certified, and the next run without
/// faults publishes what is missing: every deleted object in exactly one
/// certificate, every certificate verifying with its chain.
#[tokio::test]
async fn faults_at_the_certificate_destination_lose_no_certificate() {
    let seeds: u64 = std::env::var("LETHE_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(8);
    let (mut faults_total, mut failed_runs, mut unpublished) = (0, 0, 0);
    for seed in 0..seeds {
        let bucket = Bucket::new(Kind::S3).await;
        let mut w = World::new();
        w.env = bucket.env();
        let old = months_ago(8);
        let mut expired = BTreeSet::new();
        for i in 0..30 {
            let key = format!("calls/quality/{old}/E-{i:03}.wav");
            w.put(&key, "audio");
            expired.insert(key);
        }
        let kept = format!("calls/quality/{}/N-1.wav", months_ago(2));
        w.put(&kept, "audio");
        let (url, options) = bucket.url_and_options("certs");
        w.certificates = format!("\"{url}\"");
        for attempt in 0..6u32 {
            // From heavy to light: light faults let a run get past the
            // destination's checks and fail only at its certificate.
            let k = [1.0, 0.5, 0.25][attempt as usize % 3];
            w.tail = format!(
                "\n[certificates_options]\n{options}[certificates_inject_faults]\nseed = {}\nerror = {}\ntimeout = {}\nlost_reply = {}\ndelay = \"20ms\"\n",
                seed * 10 + u64::from(attempt),
                0.1 * k,
                0.05 * k,
                0.1 * k
            );
            w.write_config();
            // New recordings come due between the runs.
            let key = format!("calls/quality/{old}/R-{attempt}.wav");
            w.put(&key, "audio");
            expired.insert(key);
            let due = expired.iter().filter(|k| w.exists(k)).count();
            let out = w.lethe(&["run"]);
            faults_total += injected_faults(&out);
            let code = code(&out);
            if code == 1 && expired.iter().filter(|k| w.exists(k)).count() < due {
                // Deleted, then could not publish: the next run must.
                unpublished += 1;
            }
            assert!(
                code == 0 || code == 1,
                "seed {seed}: exit {code}\n{}",
                stderr(&out)
            );
            if code == 1 {
                failed_runs += 1;
            }
            assert!(
                w.exists(&kept),
                "seed {seed}: the kept recording was deleted"
            );
            if code == 0 {
                // A run that says it succeeded published its certificate.
                let sequence = w
                    .sql("SELECT COUNT(*) FROM ledger WHERE kind = 'certificate'")
                    .parse::<u64>()
                    .unwrap();
                let name = format!("certs/lethe-cert-{sequence:06}.json");
                assert!(
                    bucket.exists(&name).await,
                    "seed {seed}: exit 0 without {name}"
                );
            }
        }
        w.tail = format!("\n[certificates_options]\n{options}");
        w.write_config();
        assert_exit(&w.lethe(&["run"]), 0);
        assert!(expired.iter().all(|k| !w.exists(k)), "seed {seed}");
        assert!(w.exists(&kept));
        let mut certified = Vec::new();
        for n in 1.. {
            let name = format!("certs/lethe-cert-{n:06}.json");
            if !bucket.exists(&name).await {
                break;
            }
            let verify = w.lethe(&["verify", &format!("{url}/lethe-cert-{n:06}.json")]);
            assert_exit(&verify, 0);
            let manifest = bucket
                .get(&format!("certs/lethe-cert-{n:06}.manifest.jsonl"))
                .await;
            for line in manifest.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                certified.push(v["key"].as_str().unwrap().to_string());
            }
        }
        let recorded = w
            .sql("SELECT COUNT(*) FROM ledger WHERE kind = 'certificate'")
            .parse::<usize>()
            .unwrap();
        assert!(
            bucket
                .exists(&format!("certs/lethe-cert-{recorded:06}.json"))
                .await,
            "seed {seed}: the ledger's last certificate is not in the destination"
        );
        let unique: BTreeSet<String> = certified.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            certified.len(),
            "seed {seed}: certified twice"
        );
        assert_eq!(unique, expired, "seed {seed}: certified set");
        assert_exit(&w.lethe(&["ledger", "verify"]), 0);
    }
    eprintln!(
        "destination faults: {seeds} seeds, {faults_total} faults injected, {failed_runs} runs failed (exit 1), {unpublished} of them after deleting (certificate published by a later run), 0 certificates lost, 0 wrongful deletions"
    );
    assert!(faults_total > 0, "the faults were never injected");
    assert!(
        unpublished > 0,
        "no run failed to publish after deleting: the faults missed the case"
    );
}

/// Any certificate the destination lacks is rebuilt, not only the last:
/// a run whose certificate was not published, followed by a run that could
/// not rebuild it, leaves an earlier certificate missing.
#[test]
fn every_certificate_missing_from_the_destination_is_rebuilt() {
    let w = World::new();
    let old = months_ago(8);
    for run in 0..3 {
        w.put(&format!("calls/quality/{old}/E-{run}.wav"), "audio");
        assert_exit(&w.lethe(&["run"]), 0);
    }
    let originals: Vec<(Vec<u8>, Vec<u8>)> = (1..=3)
        .map(|n| (read(&w.cert(n)), read(&w.manifest(n))))
        .collect();
    // The first certificate, and the second's manifest, are lost.
    std::fs::remove_file(w.cert(1)).unwrap();
    std::fs::remove_file(w.manifest(1)).unwrap();
    std::fs::remove_file(w.manifest(2)).unwrap();
    assert_exit(&w.lethe(&["ledger", "verify"]), 4);
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    for (n, (cert, manifest)) in (1..=3).zip(&originals) {
        assert_eq!(
            &read(&w.cert(n)),
            cert,
            "certificate #{n} rebuilt byte for byte"
        );
        assert_eq!(&read(&w.manifest(n)), manifest, "manifest #{n}");
        assert_exit(&w.lethe(&["verify", w.cert(n).to_str().unwrap()]), 0);
    }
    assert_exit(&w.lethe(&["verify", w.cert(4).to_str().unwrap()]), 0);
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

/// `[stores.inject_faults]` with `setting` on a local folder is a config
/// error (exit 2) that says `why`.
fn refused_on_a_folder(setting: &str, why: &str) {
    let mut w = World::new();
    w.stores
        .push_str(&format!("[stores.inject_faults]\nseed = 1\n{setting}\n"));
    w.write_config();
    let out = w.lethe(&["plan"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains(why), "{}", stderr(&out));
}

#[test]
fn fault_injection_on_a_local_folder_cannot_reorder_its_walk() {
    refused_on_a_folder(
        "error = 0.5\nreorder = 3",
        "a local folder's walk is not reordered",
    );
}

#[test]
fn fault_injection_on_a_local_folder_cannot_hide_from_a_range_listing() {
    refused_on_a_folder(
        "hide = 0.5",
        "inject_faults.hide applies to object-store URLs",
    );
}

/// Three day folders, each with two recordings kept for disputes by their
/// sidecars (which sort before them) and two expired ones without a sidecar.
async fn ordered_corpus(bucket: &Bucket) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut kept, mut expired) = (BTreeSet::new(), BTreeSet::new());
    for m in [9, 10, 11] {
        let day = months_ago(m);
        for i in 0..2 {
            let rec = format!("calls/quality/{day}/A-{i}.wav");
            bucket.put(&format!("tenant-a/{rec}"), "audio").await;
            let sidecar = rec.replace(".wav", ".json");
            bucket
                .put(
                    &format!("tenant-a/{sidecar}"),
                    r#"{"purposes":["disputes"]}"#,
                )
                .await;
            kept.extend([rec, sidecar]);
            let rec = format!("calls/quality/{day}/B-{i}.wav");
            bucket.put(&format!("tenant-a/{rec}"), "audio").await;
            expired.insert(rec);
        }
    }
    (kept, expired)
}

/// A store that lists out of order (an S3 directory bucket, an S3-compatible
/// service, one that breaks its promise), simulated by listing moto's pages
/// of three entries out of order (a recording and its sidecar fall on two
/// pages): no decision rests on an order the listing did not
/// keep. Declared lexicographic, the disorder is found, across folders
/// too, and the store fails with nothing deleted; left to its default (a
/// custom endpoint promises no order), every sidecar is fetched and the run
/// deletes exactly the expired recordings.
#[tokio::test]
async fn a_listing_out_of_order_never_deletes_what_a_sidecar_keeps() {
    let mut failed = 0;
    for seed in 0..6 {
        let bucket = Bucket::new(Kind::S3).await;
        let (kept, expired) = ordered_corpus(&bucket).await;
        let mut w = World::new();
        w.env = bucket.env();
        let reorder = format!("[stores.inject_faults]\nseed = {seed}\nreorder = 3\n");
        let present = |keys: BTreeSet<String>| -> BTreeSet<String> {
            keys.iter()
                .filter_map(|k| k.strip_prefix("tenant-a/").map(str::to_string))
                .collect()
        };

        w.stores = format!(
            "{}{reorder}",
            bucket.store_toml(
                "recordings",
                "tenant-a",
                "listing_order = \"lexicographic\"\n"
            )
        );
        w.write_config();
        let out = w.lethe(&["run"]);
        let left = present(bucket.keys().await);
        for k in &kept {
            assert!(
                left.contains(k),
                "seed {seed}: {k} was deleted although its sidecar keeps it\n{}",
                stderr(&out)
            );
        }
        if code(&out) == 1 {
            assert!(
                stderr(&out).contains("out of key order"),
                "seed {seed}: {}",
                stderr(&out)
            );
            assert_eq!(left.len(), kept.len() + expired.len(), "seed {seed}");
            failed += 1;
        } else {
            assert_exit(&out, 0);
        }

        w.stores = format!(
            "{}{reorder}",
            bucket.store_toml("recordings", "tenant-a", "")
        );
        w.write_config();
        let out = w.lethe(&["run"]);
        assert_exit(&out, 0);
        assert_eq!(present(bucket.keys().await), kept, "seed {seed}");
        let certified: BTreeSet<String> = w.all_certified().into_iter().collect();
        assert_eq!(certified, expired, "seed {seed}");
    }
    assert!(
        failed > 0,
        "no seed listed a kept recording before its sidecar"
    );
}

/// A store whose range listings hide a present key once each (`hide = 1.0`:
/// every range listing hides the first key it may, an eventually consistent
/// store or a buggy gateway), on S3 (moto): companions are known from the
/// run's own listing, so every transcript of a deleted recording is deleted
/// with it, whatever a later listing hides, and the certificate names
/// exactly what was deleted. The kept recordings' transcripts, which lie
/// among them, are what the verification listings hide.
#[tokio::test]
async fn a_listing_that_hides_present_keys_leaves_no_transcript_behind() {
    let bucket = Bucket::new(Kind::S3).await;
    let mut w = World::new();
    w.env = bucket.env();
    let old = months_ago(8);
    let (mut deleted, mut kept) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..30 {
        // Expired, with its transcript.
        let rec = format!("calls/quality/{old}/C-{i:03}a.wav");
        let transcript = format!("transcripts/C-{i:03}a.txt");
        bucket.put(&format!("tenant-a/{rec}"), "audio").await;
        bucket.put(&format!("tenant-a/{transcript}"), "text").await;
        deleted.extend([rec, transcript]);
        // Kept for disputes by its sidecar, with its transcript: both sort
        // among the deleted ones.
        let rec = format!("calls/quality/{old}/C-{i:03}b.wav");
        let sidecar = rec.replace(".wav", ".json");
        let transcript = format!("transcripts/C-{i:03}b.txt");
        bucket.put(&format!("tenant-a/{rec}"), "audio").await;
        bucket
            .put(
                &format!("tenant-a/{sidecar}"),
                r#"{"purposes":["disputes"]}"#,
            )
            .await;
        bucket.put(&format!("tenant-a/{transcript}"), "text").await;
        kept.extend([rec, sidecar, transcript]);
    }
    w.safety = "max_deletions = 1000000\nmax_fraction = 1.0\n".into();
    w.stores = format!(
        "{}[stores.inject_faults]\nseed = 7\nhide = 1.0\n",
        bucket.store_toml(
            "recordings",
            "tenant-a",
            "listing_order = \"lexicographic\"\n"
        )
    );
    w.write_config();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    assert!(
        hidden_keys(&out) > 0,
        "no listing hid a key:\n{}",
        stderr(&out)
    );
    let present: BTreeSet<String> = bucket
        .keys()
        .await
        .iter()
        .filter_map(|k| k.strip_prefix("tenant-a/").map(str::to_string))
        .collect();
    assert_eq!(present, kept, "exactly the kept objects remain");
    let certified: Vec<String> = w.all_certified();
    assert_eq!(
        certified.len(),
        deleted.len(),
        "each deleted object certified once"
    );
    assert_eq!(
        certified.into_iter().collect::<BTreeSet<_>>(),
        deleted,
        "the certificate names exactly what was deleted"
    );
    assert_eq!(w.sql("SELECT COUNT(*) FROM pending_intent"), "0");
    assert_exit(
        &w.lethe(&["verify", w.cert(1).to_str().unwrap(), "--check-store"]),
        0,
    );
}
