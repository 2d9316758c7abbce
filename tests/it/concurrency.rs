//! Runs never overlap: a lease with an epoch that every intent write must
//! match, on SQLite and PostgreSQL; and "now" is the database's clock.

use std::collections::BTreeSet;
use std::time::Duration;

use lethe::execute::{IntentGroup, Journal};
use lethe::ledger::{Holder, LeaseError};

use crate::*;

async fn two_runs_at_once_delete_each_object_once(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let old = months_ago(30);
    let mut expired = BTreeSet::new();
    for i in 0..1200 {
        let key = format!("calls/quality/{old}/C-{i:05}.wav");
        w.put(&key, "audio");
        expired.insert(key);
    }
    let a = w
        .command(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = w
        .command(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [code(&a), code(&b)];
    assert!(
        codes.contains(&0),
        "one run succeeds: {codes:?}\n{}\n{}",
        stderr(&a),
        stderr(&b)
    );
    for o in [&a, &b] {
        if code(o) != 0 {
            assert_eq!(code(o), 1, "{}", stderr(o));
            assert!(stderr(o).contains("holds the run lease"), "{}", stderr(o));
        }
    }
    // A third run finds nothing left; every deleted object is certified exactly once.
    assert_exit(&w.lethe(&["run"]), 0);
    let mut certified = Vec::new();
    for n in 1.. {
        if !w.cert(n).exists() {
            break;
        }
        assert_exit(&w.lethe(&["verify", w.cert(n).to_str().unwrap()]), 0);
        certified.extend(w.manifest_keys(n));
    }
    let unique: BTreeSet<String> = certified.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        certified.len(),
        "an object is certified twice"
    );
    assert_eq!(unique, expired);
    assert!(expired.iter().all(|k| !w.exists(k)));
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

async fn a_worker_whose_lease_passed_to_another_cannot_start_a_deletion(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let ledger = w.ledger().await;
    // Worker A takes the lease for one second, then "pauses".
    let a = Holder {
        run_id: "run-a".into(),
        host: "node-a.example".into(),
        pid: 1,
        pass: None,
        pid_scope: None,
    };
    let lease_a = ledger
        .acquire_lease("retention", &a, Duration::from_secs(1))
        .await
        .unwrap();
    // While A's lease is valid, B is refused.
    let b = Holder {
        run_id: "run-b".into(),
        host: "node-b.example".into(),
        pid: 1,
        pass: None,
        pid_scope: None,
    };
    assert!(matches!(
        ledger
            .acquire_lease("retention", &b, Duration::from_secs(60))
            .await,
        Err(LeaseError::Held { .. })
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A's lease expired: B takes over with a new epoch.
    let lease_b = ledger
        .acquire_lease("retention", &b, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(lease_b.epoch, lease_a.epoch + 1);
    // A wakes up and tries to record an intent: fenced.
    let intent = lethe::execute::Intent {
        store: "recordings".into(),
        key: "calls/x.wav".into(),
        role: lethe::execute::Role::Recording,
        recording: "calls/x.wav".into(),
        size: 1,
        e_tag: None,
        purposes: vec!["quality".into()],
        recorded_at: chrono::Utc::now(),
        expires_at: chrono::Utc::now(),
        rules: vec!["r".into()],
        purpose: "quality".into(),
        basis: "b".into(),
    };
    let groups = [IntentGroup {
        target: None,
        intents: vec![intent],
    }];
    let err = ledger
        .fenced_journal("run-a", lease_a.clone())
        .record_intents(&groups)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the run lease passed to another run"),
        "{err}"
    );
    assert!(
        ledger
            .renew_lease(&lease_a, Duration::from_secs(60))
            .await
            .is_err()
    );
    // B writes normally; nothing of A's reached the ledger.
    ledger
        .fenced_journal("run-b", lease_b.clone())
        .record_intents(&groups)
        .await
        .unwrap();
    assert_eq!(ledger.pending().await.unwrap().len(), 1);
    assert_eq!(ledger.pending().await.unwrap()[0].run_id, "run-b");
    ledger.release_lease(&lease_b).await.unwrap();
    ledger
        .acquire_lease("retention", &a, Duration::from_secs(1))
        .await
        .unwrap();
    ledger.close().await;
}

async fn a_machine_whose_clock_disagrees_with_the_database_does_not_delete(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let key = format!("calls/quality/{}/C-1.wav", months_ago(30));
    w.put(&key, "audio");
    // No two clocks agree to the nanosecond: a zero tolerance always refuses.
    w.safety = "max_deletions = 100\nmax_fraction = 1.0\nmax_clock_skew = \"0s\"\n".into();
    w.write_config();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("clock differs from the database's"),
        "{}",
        stderr(&out)
    );
    assert!(w.exists(&key));
    w.safety = "max_deletions = 100\nmax_fraction = 1.0\nmax_clock_skew = \"1m\"\n".into();
    w.write_config();
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(!w.exists(&key));
}

async fn shards_split_a_store_between_concurrent_processes(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let old = months_ago(30);
    let mut expired = BTreeSet::new();
    for i in 0..900 {
        let key = format!("calls/quality/{old}/C-{i:05}.wav");
        w.put(&key, "audio");
        expired.insert(key);
        if i % 2 == 0 {
            let t = format!("transcripts/C-{i:05}.txt");
            w.put(&t, "text");
            expired.insert(t);
        }
    }
    let kept = format!("calls/quality/{}/K-1.wav", months_ago(1));
    w.put(&kept, "audio");
    // Three pods of an Indexed Job, at once, sharing the store and the ledger.
    let outputs = w.shards(3, &[]);
    for o in &outputs {
        assert_exit(o, 0);
    }
    // Each shard deleted only its share, and every certificate of the chain holds.
    let mut certified = Vec::new();
    for n in 1.. {
        if !w.cert(n).exists() {
            break;
        }
        assert_exit(&w.lethe(&["verify", w.cert(n).to_str().unwrap()]), 0);
        certified.extend(w.manifest_keys(n));
    }
    assert!(!w.cert(4).exists(), "one certificate per shard");
    assert!(w.cert(3).exists(), "one certificate per shard");
    let unique: BTreeSet<String> = certified.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        certified.len(),
        "an object is certified twice"
    );
    assert_eq!(
        unique, expired,
        "the union of the shards is exactly the expected set"
    );
    assert!(expired.iter().all(|k| !w.exists(k)));
    assert!(w.exists(&kept));
    let runs: BTreeSet<String> = (1..=3)
        .map(|n| w.payload(n)["run"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(runs.len(), 3, "each shard's run certified once");
    // Each certificate holds what its shard deleted and nothing of the
    // others', although their outcomes interleave in the ledger; and the
    // certificate a shard names is its own.
    for o in &outputs {
        let out = stdout(o);
        let run = out
            .lines()
            .find_map(|l| l.strip_prefix("run ")?.split(':').next())
            .unwrap_or_else(|| panic!("no run line: {out}"));
        let location = out
            .lines()
            .find_map(|l| l.strip_prefix("certificate: "))
            .unwrap_or_else(|| panic!("no certificate: {out}"));
        let n = (1..=3)
            .find(|&n| w.cert(n).to_str() == Some(location))
            .unwrap_or_else(|| panic!("{location} is not one of the three"));
        let payload = w.payload(n);
        assert_eq!(payload["run"]["id"], run, "{out}");
        let entries = w.manifest_entries(n);
        assert!(!entries.is_empty(), "shard {run} deleted nothing");
        for e in &entries {
            assert_eq!(
                e["run_id"], run,
                "certificate #{n} holds another shard's deletion"
            );
        }
        assert_eq!(payload["counts"]["items"], entries.len() as u64);
        assert_eq!(payload["ledger"]["runs"], serde_json::json!([run]));
        let deleted: u64 = out
            .lines()
            .filter_map(|l| {
                let rest = l.split_once("): deleted ")?.1;
                rest.split_once(" recordings (")?
                    .1
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        assert_eq!(
            payload["counts"]["objects_deleted"].as_u64(),
            Some(deleted),
            "the summary and the certificate of shard {run} disagree: {out}"
        );
    }
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
    assert_exit(&w.lethe(&["run", "--shard", "3/3"]), 2);
}

/// Runs that cover the same stores exclude each other whatever their
/// sharding: while shard 0 of 2 holds its lease, an unsharded run, an
/// erasure and a shard of another split are refused and delete nothing;
/// shard 1 of the same split runs beside it.
async fn runs_of_different_shardings_exclude_each_other(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let old = months_ago(30);
    let keys: Vec<String> = (0..40)
        .map(|i| format!("calls/quality/{old}/C-{i:03}.wav"))
        .collect();
    for k in &keys {
        w.put(k, "audio");
    }
    w.put(&keys[0].replace(".wav", ".json"), r#"{"subject":"CUST-1"}"#);
    let ledger = w.ledger().await;
    // A live shard: this test process stands in for it.
    let lease = ledger
        .acquire_lease(
            "retention/shard-0-of-2",
            &lethe::ledger::Holder::this_process("shard-0"),
            std::time::Duration::from_secs(120),
        )
        .await
        .unwrap();
    for args in [
        vec!["run"],
        vec!["run", "--shard", "0/3"],
        vec!["erase", "--subject", "CUST-1", "--request", "DSR-1"],
    ] {
        let out = w.lethe(&args);
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains("holds the run lease"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            keys.iter().all(|k| w.exists(k)),
            "{args:?} deleted something"
        );
    }
    // Shard 1 joins shard 0's pass; the pass's limits need shard 0's plan too.
    ledger
        .record_shard_plan(
            "shard-0",
            &lethe::ledger::ShardPlan {
                pass: lease.holder.pass.clone().unwrap(),
                shard: 0,
                of: 2,
                stores: Default::default(),
            },
        )
        .await
        .unwrap();
    let shard1 = lethe::decide::Shard::parse("1/2").unwrap();
    assert_exit(&w.lethe(&["run", "--shard", "1/2"]), 0);
    for k in &keys {
        assert_eq!(w.exists(k), !shard1.owns("recordings", k), "{k}");
    }
    ledger.release_lease(&lease).await.unwrap();
    ledger.close().await;
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(keys.iter().all(|k| !w.exists(k)));
}

/// The safety limits are a property of the pass: shards that each stay
/// under `max_deletions` but together exceed it all stop before deleting
/// anything; within the limits they delete everything between them; a shard
/// whose pass never completes its plan deletes nothing.
async fn shards_check_the_limits_on_the_whole_pass(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let old = months_ago(30);
    let keys: Vec<String> = (0..200)
        .map(|i| format!("calls/quality/{old}/C-{i:03}.wav"))
        .collect();
    for k in &keys {
        w.put(k, "audio");
    }
    w.safety = "max_deletions = 100\nmax_fraction = 1.0\n".into();
    w.write_config();
    for o in w.shards(4, &[]) {
        assert_exit(&o, 3);
        assert!(
            stdout(&o).contains("the pass of 4 shards: 200 recordings would be deleted, more than max_deletions = 100"),
            "{}",
            stdout(&o)
        );
    }
    assert!(keys.iter().all(|k| w.exists(k)), "nothing deleted");

    // A shard alone: its pass never completes its plan, it deletes nothing.
    w.safety = "max_deletions = 1000\nmax_fraction = 1.0\nshard_wait = \"1s\"\n".into();
    w.write_config();
    let alone = w.lethe(&["run", "--shard", "2/4"]);
    assert_exit(&alone, 3);
    assert!(
        stdout(&alone).contains("did not plan within 1s"),
        "{}",
        stdout(&alone)
    );
    assert!(keys.iter().all(|k| w.exists(k)), "nothing deleted");

    w.safety = "max_deletions = 1000\nmax_fraction = 1.0\n".into();
    w.write_config();
    for o in w.shards(4, &[]) {
        assert_exit(&o, 0);
    }
    assert!(keys.iter().all(|k| !w.exists(k)));
    assert_eq!(sorted(w.all_certified()), sorted(keys.clone()));
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

/// `lethe run` as `unshare --pid --fork --mount-proc` starts it: same host
/// name, its own PID namespace (as a container on the host network or a pod
/// with `hostNetwork`).
fn run_in_own_pid_namespace(w: &World) -> std::process::Output {
    let lethe = w.command(&["run"]);
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(lethe.get_program())
        .args(lethe.get_args())
        .current_dir(w.dir.path());
    for (k, v) in lethe.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().expect("unshare (util-linux), run as root")
}

async fn a_live_lease_is_never_taken_from_another_pid_namespace(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let key = format!("calls/quality/{}/C-1.wav", months_ago(30));
    w.put(&key, "audio");
    let ledger = w.ledger().await;
    // This test process holds the lease, as a `lethe run` under way would.
    let live = ledger
        .acquire_lease(
            "retention",
            &Holder::this_process("run-live"),
            Duration::from_secs(120),
        )
        .await
        .unwrap();

    // Its pid does not exist in the new namespace: that says nothing of it.
    let out = run_in_own_pid_namespace(&w);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("holds the run lease"),
        "{}",
        stderr(&out)
    );
    assert!(w.exists(&key));
    let out = w.lethe(&["run"]);
    assert_exit(&out, 1);
    assert!(w.exists(&key));

    // A holder of this namespace whose process is gone is taken over at once,
    // but not from another namespace, where its pid means nothing.
    ledger.release_lease(&live).await.unwrap();
    let mut exited = std::process::Command::new("true").spawn().unwrap();
    exited.wait().unwrap();
    let gone = Holder {
        pid: exited.id(),
        ..Holder::this_process("run-gone")
    };
    ledger
        .acquire_lease("retention", &gone, Duration::from_secs(120))
        .await
        .unwrap();
    assert_exit(&run_in_own_pid_namespace(&w), 1);
    assert!(w.exists(&key));
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(!w.exists(&key), "the crashed holder's lease was taken over");
}

for_each_db! {
    shards_check_the_limits_on_the_whole_pass => shards_check_the_limits_on_the_whole_pass,
    runs_of_different_shardings_exclude_each_other => runs_of_different_shardings_exclude_each_other,
    a_live_lease_is_never_taken_from_another_pid_namespace => a_live_lease_is_never_taken_from_another_pid_namespace,
    shards_split_a_store => shards_split_a_store_between_concurrent_processes,
    two_concurrent_runs_delete_each_object_once => two_runs_at_once_delete_each_object_once,
    lease_fencing_stops_a_paused_worker => a_worker_whose_lease_passed_to_another_cannot_start_a_deletion,
    clock_skew_refuses_to_delete => a_machine_whose_clock_disagrees_with_the_database_does_not_delete,
}
