//! Load: eight `--shard I/8` processes of one pass on one PostgreSQL ledger
//! over many recordings, while holds are placed and released beside them.
//! Each object is deleted at most once and certified exactly once, held
//! ones never, and the chain verifies.
//!
//! `LETHE_LOAD_RECORDINGS` sets the number of recordings (CI: 4,000; long
//! mode: 100,000 or more).

use std::collections::BTreeSet;
use std::time::Instant;

use crate::*;

fn hold(w: &World, args: &[&str]) -> std::process::Output {
    let mut all = vec!["hold"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--by", "j.kowalska", "--reason", "load test"]);
    w.lethe(&all)
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_shards_delete_each_object_once_while_holds_come_and_go() {
    let recordings: usize = std::env::var("LETHE_LOAD_RECORDINGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    let mut w = World::new();
    w.use_db(Db::Postgres).await;
    w.safety = "max_deletions = 100000000\nmax_fraction = 1.0\nshard_wait = \"90s\"\n".into();
    w.write_config();
    let old = months_ago(30);
    // Ten day folders; names by group: H held throughout, G held once the
    // shards are running, R held before and released while they run.
    let month = &old[..7];
    let key = |i: usize| {
        let group = ["H", "G", "R", "C", "C", "C", "C", "C", "C", "C"][i % 10];
        format!("calls/quality/{month}/{:02}/{group}-{i:07}.wav", i % 7 + 1)
    };
    let keys: Vec<String> = (0..recordings).map(key).collect();
    let started = Instant::now();
    for k in &keys {
        w.put(k, "audio");
    }
    let put = started.elapsed();
    let held_prefixes = |group: &str| -> Vec<String> {
        (1..=7)
            .map(|d| format!("calls/quality/{month}/{d:02}/{group}-"))
            .collect()
    };
    for (n, prefix) in held_prefixes("H").iter().enumerate() {
        assert_exit(
            &hold(
                &w,
                &[
                    "place",
                    "--case",
                    &format!("H-{n}"),
                    "--prefix",
                    prefix,
                    "--no-scan",
                ],
            ),
            0,
        );
    }
    for (n, prefix) in held_prefixes("R").iter().enumerate() {
        assert_exit(
            &hold(
                &w,
                &[
                    "place",
                    "--case",
                    &format!("R-{n}"),
                    "--prefix",
                    prefix,
                    "--no-scan",
                ],
            ),
            0,
        );
    }
    let started = Instant::now();
    let shards = {
        let w = &w;
        std::thread::scope(|s| {
            let shards = s.spawn(|| w.shards(8, &[]));
            // Beside the shards: holds placed, holds released.
            for (n, prefix) in held_prefixes("G").iter().enumerate() {
                assert_exit(
                    &hold(
                        w,
                        &[
                            "place",
                            "--case",
                            &format!("G-{n}"),
                            "--prefix",
                            prefix,
                            "--no-scan",
                        ],
                    ),
                    0,
                );
                assert_exit(&hold(w, &["release", "--case", &format!("R-{n}")]), 0);
            }
            shards.join().unwrap()
        })
    };
    let pass = started.elapsed();
    for o in &shards {
        assert_exit(o, 0);
    }
    // Held throughout: never deleted.
    for k in keys.iter().filter(|k| k.contains("/H-")) {
        assert!(w.exists(k), "{k} was held and deleted");
    }
    // Each object deleted at most once, whatever the shards and holds did.
    assert_eq!(
        w.scalar("SELECT CAST(COUNT(*) AS TEXT) FROM (SELECT object_key FROM ledger WHERE kind = 'outcome' AND body LIKE '%\"result\":\"deleted\"%' GROUP BY store, object_key HAVING COUNT(*) > 1) AS twice").await,
        "0"
    );
    // G's holds came while the shards ran: what they had not deleted by
    // then is held from then on.
    let held_late: BTreeSet<&String> = keys
        .iter()
        .filter(|k| k.contains("/G-") && w.exists(k))
        .collect();
    // A last unsharded run: what the released holds kept goes; H and G stay.
    assert_exit(&w.lethe(&["run"]), 0);
    let expected_left: BTreeSet<&String> = keys
        .iter()
        .filter(|k| k.contains("/H-") || held_late.contains(k))
        .collect();
    for k in &keys {
        assert_eq!(w.exists(k), expected_left.contains(k), "{k}");
    }
    let certified = w.all_certified();
    let unique: BTreeSet<String> = certified.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        certified.len(),
        "an object is certified twice"
    );
    let gone: BTreeSet<String> = keys
        .iter()
        .filter(|k| !expected_left.contains(k))
        .cloned()
        .collect();
    assert_eq!(unique, gone, "every deleted object certified");
    let mut n = 1;
    while w.cert(n).exists() {
        n += 1;
    }
    assert_exit(&w.lethe(&["verify", w.cert(n - 1).to_str().unwrap()]), 0);
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
    eprintln!(
        "load: {recordings} recordings, 8 shards, {} certificates, {} of {} recordings held late still there; put {:.1} s, pass {:.1} s ({:.0} deletions/s), 0 deleted twice, 0 held deleted",
        n - 1,
        held_late.len(),
        keys.iter().filter(|k| k.contains("/G-")).count(),
        put.as_secs_f64(),
        pass.as_secs_f64(),
        certified.len() as f64 / pass.as_secs_f64()
    );
}
