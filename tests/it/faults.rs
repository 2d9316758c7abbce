//! Store faults: S3 (moto), Azure Blob (Azurite) and GCS (fake-gcs-server)
//! behind the fault-injecting client (`[stores.inject_faults]`,
//! `src/store/faults.rs`), across many seeds.
//! Transient errors, throttling, timeouts, slow answers, lost replies and
//! partial bulk-delete failures may make a run fail, never make it delete
//! what it must keep or certify what still exists; whatever failed is
//! reported with exit 1 and finished by the next run.
//!
//! `LETHE_FAULT_SEEDS` sets the number of seeds (CI: 8; long mode: 100).

use std::collections::BTreeSet;

use crate::cloud::{Bucket, Kind};
use crate::*;

struct Corpus {
    expired: BTreeSet<String>,
    kept: BTreeSet<String>,
}

async fn corpus(bucket: &Bucket) -> Corpus {
    let old = months_ago(8);
    let new = months_ago(2);
    let mut expired = BTreeSet::new();
    let mut kept = BTreeSet::new();
    for i in 0..40 {
        let rec = format!("calls/quality/{old}/E-{i:03}.wav");
        expired.insert(rec.clone());
        if i % 2 == 0 {
            expired.insert(format!("transcripts/E-{i:03}.txt"));
        }
        if i % 5 == 0 {
            expired.insert(rec.replace(".wav", ".json"));
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
        bucket.put(&format!("tenant-a/{k}"), body).await;
    }
    Corpus { expired, kept }
}

fn injected_faults(o: &std::process::Output) -> usize {
    stderr(o).matches("injected fault").count()
}

#[tokio::test]
async fn no_store_fault_leads_to_a_wrongful_or_uncertified_deletion() {
    let seeds: u64 = std::env::var("LETHE_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let (mut faults_total, mut failed_first_runs, mut retried) = (0, 0, 0);
    let mut kinds = std::collections::BTreeMap::new();
    for seed in 0..seeds {
        // Each kind of store in turn, each at every fault scale.
        let kind = [Kind::S3, Kind::Azure, Kind::Gcs][(seed % 3) as usize];
        *kinds.entry(format!("{kind:?}")).or_insert(0) += 1;
        let bucket = Bucket::new(kind).await;
        let c = corpus(&bucket).await;
        let mut w = World::new();
        w.env = bucket.env();
        w.safety = "max_deletions = 1000000\nmax_fraction = 1.0\n".into();
        // At full scale a quarter of requests meet some fault and a fifth of
        // the keys of a bulk delete fail alone; every third seed is gentler.
        let k = [1.0, 0.5, 0.05][((seed / 3) % 3) as usize];
        w.stores = format!(
            "{}[stores.inject_faults]\nseed = {seed}\nerror = {}\nthrottle = {}\ntimeout = {}\nlost_reply = {}\nslow = {}\npartial = {}\ndelay = \"20ms\"\n",
            // moto lists in key order: the scan infers absent sidecars, as
            // on AWS; Azurite and fake-gcs keep their kinds' defaults.
            bucket.store_toml(
                "recordings",
                "tenant-a",
                if kind == Kind::S3 {
                    "listing_order = \"lexicographic\"\n"
                } else {
                    ""
                }
            ),
            0.08 * k,
            0.06 * k,
            0.03 * k,
            0.05 * k,
            0.03 * k,
            0.2 * k,
        );
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
        let code = code(&first);
        assert!(
            code == 0 || code == 1,
            "seed {seed} ({kind:?}): exit {code}\n{}",
            stderr(&first)
        );
        let present = bucket.keys().await;
        let present: BTreeSet<String> = present
            .iter()
            .filter_map(|k| k.strip_prefix("tenant-a/").map(str::to_string))
            .collect();
        for k in &c.kept {
            assert!(
                present.contains(k),
                "seed {seed} ({kind:?}): {k} was wrongly deleted"
            );
        }
        for k in w.all_certified() {
            assert!(
                !present.contains(&k),
                "seed {seed} ({kind:?}): certified {k} still exists"
            );
        }
        let left: Vec<&String> = c.expired.intersection(&present).collect();
        if !left.is_empty() {
            retried += left.len();
            assert_eq!(
                code,
                1,
                "seed {seed} ({kind:?}): {} expired objects remain ({:?}...), yet the run said it succeeded\n{}",
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
        w.stores = bucket.store_toml("recordings", "tenant-a", "");
        w.write_config();
        let second = w.lethe(&["run"]);
        assert_exit(&second, 0);
        let present: BTreeSet<String> = bucket
            .keys()
            .await
            .iter()
            .filter_map(|k| k.strip_prefix("tenant-a/").map(str::to_string))
            .collect();
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
            "seed {seed} ({kind:?}): after the second run; ledger of the objects left:\n{}\n--- first run\n{}\n--- second run\n{}",
            history.join("\n"),
            stderr(&first),
            stderr(&second)
        );
        let all = w.all_certified();
        let unique: BTreeSet<String> = all.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            all.len(),
            "seed {seed} ({kind:?}): certified twice"
        );
        assert_eq!(unique, c.expired, "seed {seed} ({kind:?}): certified set");
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
        "fault suite: {seeds} seeds ({kinds:?}), {faults_total} faults injected, {failed_first_runs} first runs failed (exit 1), {retried} objects finished by the next run, 0 wrongful deletions"
    );
    assert!(faults_total > 0, "the faults were never injected");
}

#[test]
fn fault_injection_is_refused_on_a_local_folder_and_checked() {
    let mut w = World::new();
    w.stores
        .push_str("[stores.inject_faults]\nseed = 1\nerror = 0.5\n");
    w.write_config();
    let out = w.lethe(&["plan"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("inject_faults applies to object-store URLs"),
        "{}",
        stderr(&out)
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
