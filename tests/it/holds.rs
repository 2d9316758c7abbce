//! Legal holds, on SQLite and PostgreSQL: held recordings stay whatever their
//! retention says, released ones go, holds are evidence in the ledger, and a
//! hold placed by another process during a run protects every deletion that
//! has not started, and one released during a run protects its recordings
//! until the next run.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lethe::decide::{Action, Planned};
use lethe::execute::{self, Options};
use lethe::policy::Policy;
use lethe::store::Store;
use object_store::local::LocalFileSystem;
use object_store::throttle::{ThrottleConfig, ThrottledStore};

use crate::*;

struct Sample {
    subject_held: String,
    prefix_held: String,
    free: String,
}

fn sample(w: &World) -> Sample {
    let old = months_ago(30);
    let s = Sample {
        subject_held: format!("calls/quality/{old}/S-1.wav"),
        prefix_held: format!("calls/disputes/{old}/D-1.wav"),
        free: format!("calls/training/{old}/T-1.wav"),
    };
    w.put(&s.subject_held, "audio");
    w.put(
        &s.subject_held.replace(".wav", ".json"),
        r#"{"subject":"CUST-123"}"#,
    );
    w.put("transcripts/S-1.txt", "text");
    w.put(&s.prefix_held, "audio");
    w.put(&s.free, "audio");
    s
}

fn place(w: &World, args: &[&str]) -> std::process::Output {
    let mut all = vec![
        "hold",
        "place",
        "--by",
        "j.kowalska",
        "--reason",
        "complaint escalated to court",
    ];
    all.extend_from_slice(args);
    w.lethe(&all)
}

async fn held_recordings_stay_and_released_ones_go(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let s = sample(&w);
    let out = place(&w, &["--case", "CASE-2026-117", "--subject", "CUST-123"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("hold CASE-2026-117 placed by j.kowalska"),
        "{}",
        stdout(&out)
    );
    let out = place(
        &w,
        &[
            "--case",
            "CASE-2026-118",
            "--prefix",
            "calls/disputes/",
            "--store",
            "recordings",
            "--review",
            "2020-01-01",
        ],
    );
    // A review date already past is accepted, with a warning.
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("WARNING: the review date 2020-01-01 is already past")
            && stderr(&out).contains("the review date is already past"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let plan = w.lethe(&["plan"]);
    assert_exit(&plan, 0);
    let text = stdout(&plan);
    assert!(
        text.contains(&format!(
            "HOLD   {}  kept: legal hold CASE-2026-117",
            s.subject_held
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "HOLD   {}  kept: legal hold CASE-2026-118",
            s.prefix_held
        )),
        "{text}"
    );
    assert!(
        text.contains("NOTICE: hold CASE-2026-118 was due for review on 2020-01-01"),
        "{text}"
    );

    assert_exit(&w.lethe(&["run"]), 0);
    assert!(
        w.exists(&s.subject_held) && w.exists("transcripts/S-1.txt"),
        "held by subject (from the sidecar)"
    );
    assert!(w.exists(&s.prefix_held), "held by prefix");
    assert!(!w.exists(&s.free));

    let show = w.lethe(&["hold", "show", "CASE-2026-117"]);
    assert_exit(&show, 0);
    assert!(
        stdout(&show).contains(&format!("recordings: {}", s.subject_held))
            || stdout(&show).contains(&s.subject_held),
        "{}",
        stdout(&show)
    );
    assert!(stdout(&show).contains("1 recordings"), "{}", stdout(&show));

    // Released: back to normal retention, which ran out during the hold.
    let out = w.lethe(&[
        "hold",
        "release",
        "--case",
        "CASE-2026-117",
        "--by",
        "j.kowalska",
        "--reason",
        "judgment final",
    ]);
    assert_exit(&out, 0);
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(!w.exists(&s.subject_held) && !w.exists("transcripts/S-1.txt"));
    assert!(w.exists(&s.prefix_held));

    // A hold is never edited and a case id never reused.
    let again = place(&w, &["--case", "CASE-2026-117", "--key", "x"]);
    assert_exit(&again, 2);
    assert!(
        stderr(&again).contains("a case id cannot be reused"),
        "{}",
        stderr(&again)
    );
    assert_exit(
        &w.lethe(&[
            "hold",
            "release",
            "--case",
            "CASE-2026-117",
            "--by",
            "x",
            "--reason",
            "y",
        ]),
        2,
    );
    assert_exit(
        &w.lethe(&[
            "hold",
            "release",
            "--case",
            "NO-SUCH-CASE",
            "--by",
            "x",
            "--reason",
            "y",
        ]),
        2,
    );
    assert_exit(&place(&w, &["--case", "CASE-X"]), 2);

    let list = w.lethe(&["hold", "list"]);
    assert!(
        stdout(&list).contains("CASE-2026-118  ACTIVE") && !stdout(&list).contains("CASE-2026-117"),
        "{}",
        stdout(&list)
    );
    let all = w.lethe(&["hold", "list", "--all", "--format", "json"]);
    let holds: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(holds.as_array().unwrap().len(), 2);
    assert_eq!(holds[0]["released"]["reason"], "judgment final");
    assert_eq!(
        holds[1]["hold"]["selectors"][0],
        serde_json::json!({"by": "prefix", "prefix": "calls/disputes/"})
    );
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

async fn tampering_with_a_hold_is_detected(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let s = sample(&w);
    assert_exit(
        &place(&w, &["--case", "CASE-1", "--subject", "CUST-123"]),
        0,
    );
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
    // Someone removes the hold from the index to let a run delete the recording:
    w.exec("DELETE FROM hold WHERE case_id = 'CASE-1'").await;
    let out = w.lethe(&["ledger", "verify"]);
    assert_exit(&out, 4);
    assert!(
        stdout(&out).contains("hold CASE-1 (ledger row 1) is missing from the hold index"),
        "{}",
        stdout(&out)
    );
    // ... or rewrites the hold's ledger row instead.
    w.exec(
        "UPDATE ledger SET body = REPLACE(body, 'CUST-123', 'CUST-999') WHERE kind = 'hold-placed'",
    )
    .await;
    let out = w.lethe(&["ledger", "verify"]);
    assert_exit(&out, 4);
    assert!(
        stdout(&out).contains("row 1: content does not match its hash"),
        "{}",
        stdout(&out)
    );
    assert!(w.exists(&s.subject_held));
}

/// A run relies on the hold index only while it agrees with the hash chain:
/// a hold removed, redirected or marked released in the index, or an erasure
/// request removed, stops the run before anything is deleted.
async fn a_run_refuses_a_hold_index_that_differs_from_the_chain(db: Db) {
    for tamper in [
        "DELETE FROM hold",
        "UPDATE hold SET body = REPLACE(body, 'calls/disputes/', 'zzz/')",
        "UPDATE hold SET released_seq = placed_seq",
        "DELETE FROM erasure",
    ] {
        let mut w = World::new();
        w.use_db(db).await;
        let s = sample(&w);
        assert_exit(
            &place(&w, &["--case", "CASE-9", "--prefix", "calls/disputes/"]),
            0,
        );
        assert_exit(
            &w.lethe(&["erase", "--subject", "NOBODY", "--request", "DSR-1"]),
            0,
        );
        w.exec(tamper).await;
        let out = w.lethe(&["run"]);
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains("differ from its hash chain"),
            "{tamper}: {}",
            stderr(&out)
        );
        assert!(
            w.exists(&s.prefix_held) && w.exists(&s.free),
            "{tamper}: nothing deleted"
        );
        assert_exit(&w.lethe(&["plan"]), 1);
    }
}

/// Deletes slowly, so that another process can act in the middle of a run.
fn slow_store(w: &World) -> Store {
    let local = LocalFileSystem::new_with_prefix(w.store()).unwrap();
    let throttled = ThrottledStore::new(
        local,
        ThrottleConfig {
            wait_delete_per_call: Duration::from_millis(150),
            ..Default::default()
        },
    );
    // One batch deleting at a time (and one recorded beside it), so that a
    // hold placed after the first deletion finds batches not yet recorded.
    Store::from_object_store("recordings", "file:///slow", Arc::new(throttled))
        .with_max_in_flight(1)
}

/// What the sample policy decides for every object of `store`, now.
async fn plan(store: &Store, orders: &lethe::decide::Orders) -> Vec<Planned> {
    let policy = Policy::from_sources(vec![(
        "p.yaml".into(),
        "p.yaml".into(),
        POLICY.as_bytes().to_vec(),
    )])
    .unwrap();
    crate::plan_items(store, &policy, orders, chrono::Utc::now()).await
}

/// Executes `items` on the slow store in the background, in batches of two.
fn start_slow_run(
    store: &Store,
    items: Vec<Planned>,
    ledger: lethe::ledger::Ledger,
) -> tokio::task::JoinHandle<execute::Report> {
    let store = store.clone();
    tokio::spawn(async move {
        let report = execute::execute(
            &store,
            futures::stream::iter(items),
            &ledger.journal("slow-run"),
            Options {
                batch: 2,
                concurrency: 2,
                ..Default::default()
            },
        )
        .await;
        ledger.close().await;
        report
    })
}

/// Waits until the ledger shows a first outcome; returns a ledger handle.
async fn first_deletion(w: &World) -> lethe::ledger::Ledger {
    let observer = w.ledger().await;
    let started = std::time::Instant::now();
    while observer.outcomes(1, i64::MAX).count().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run never started deleting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    observer
}

async fn a_hold_placed_during_a_run_protects_what_has_not_started(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let old = months_ago(30);
    let keys: Vec<String> = (0..16)
        .map(|i| format!("calls/quality/{old}/C-{i:02}.wav"))
        .collect();
    for k in &keys {
        w.put(k, "audio");
    }
    let store = slow_store(&w);
    // The plan is made before the hold exists: every recording is expired.
    let items = plan(&store, &lethe::decide::Orders::default()).await;
    assert_eq!(
        items.iter().filter(|i| i.action == Action::Delete).count(),
        16
    );

    let run = start_slow_run(&store, items, w.ledger().await);
    // Once the run has deleted something, another process places a hold on all of them.
    let observer = first_deletion(&w).await;
    let out = place(
        &w,
        &["--case", "CASE-MID-RUN", "--prefix", "calls/quality/"],
    );
    assert_exit(&out, 0);
    let report = run.await.unwrap();
    assert!(
        report.recordings_deleted >= 2,
        "some recordings went before the hold: {report:?}"
    );
    assert!(report.held >= 2, "the hold protected the rest: {report:?}");
    assert_eq!(report.recordings_deleted + report.held, 16, "{report:?}");

    // No deletion intent was recorded after the hold.
    let hold_seq = observer.holds().await.unwrap()[0].placed_seq;
    let mut intents = observer.rows_of_kind(lethe::ledger::Kind::Intent, 1, i64::MAX);
    let mut deleted = Vec::new();
    while let Some(row) = intents.next().await {
        let row = row.unwrap();
        assert!(
            row.seq < hold_seq,
            "intent {} recorded after the hold (row {hold_seq})",
            row.seq
        );
        deleted.push(row.key.unwrap());
    }
    drop(intents);
    for k in &keys {
        assert_eq!(w.exists(k), !deleted.contains(k), "{k}");
    }
    observer.close().await;
}

/// The ledger's rows of one kind: (seq, key; empty for rows without one).
async fn rows(ledger: &lethe::ledger::Ledger, kind: lethe::ledger::Kind) -> Vec<(i64, String)> {
    ledger
        .rows_of_kind(kind, 1, i64::MAX)
        .map(|row| {
            let row = row.unwrap();
            (row.seq, row.key.unwrap_or_default())
        })
        .collect()
        .await
}

async fn intents(ledger: &lethe::ledger::Ledger) -> Vec<(i64, String)> {
    rows(ledger, lethe::ledger::Kind::Intent).await
}

async fn a_hold_released_during_a_run_protects_its_recordings_until_the_next(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let old = months_ago(30);
    let free: Vec<String> = (0..24)
        .map(|i| format!("calls/quality/{old}/F-{i:02}.wav"))
        .collect();
    let held: Vec<String> = (0..6)
        .map(|i| format!("calls/training/{old}/H-{i:02}.wav"))
        .collect();
    for k in free.iter().chain(&held) {
        w.put(k, "audio");
    }
    assert_exit(
        &place(
            &w,
            &["--case", "CASE-RELEASED", "--prefix", "calls/training/"],
        ),
        0,
    );
    let store = slow_store(&w);
    let ledger = w.ledger().await;
    // The plan is made while the hold is active.
    let orders = lethe::decide::Orders::with_holds(ledger.active_holds().await.unwrap());
    let items = plan(&store, &orders).await;
    let action = |a: Action| items.iter().filter(|i| i.action == a).count();
    assert_eq!((action(Action::Delete), action(Action::Hold)), (24, 6));

    let run = start_slow_run(&store, items, ledger);
    // Once the run has deleted something, another process releases the hold.
    let observer = first_deletion(&w).await;
    let out = w.lethe(&[
        "hold",
        "release",
        "--case",
        "CASE-RELEASED",
        "--by",
        "j.kowalska",
        "--reason",
        "settled",
    ]);
    assert_exit(&out, 0);
    let report = run.await.unwrap();
    assert!(
        !run_finished_early(&observer).await,
        "the release came after the run had finished: the test proves nothing"
    );
    assert_eq!(report.recordings_deleted, 24, "{report:?}");
    // The run keeps what its plan held: a release does not widen a run under way.
    for k in &held {
        assert!(w.exists(k), "{k} was held when the run planned");
    }
    for k in &free {
        assert!(!w.exists(k), "{k}");
    }
    let before: Vec<String> = intents(&observer)
        .await
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    assert_eq!(sorted(before), sorted(free.clone()));

    // The next run deletes them, every intent after the release in the ledger.
    assert_exit(&w.lethe(&["run"]), 0);
    for k in &held {
        assert!(
            !w.exists(k),
            "{k} released, expired: deleted by the next run"
        );
    }
    let released_at = rows(&observer, lethe::ledger::Kind::HoldReleased).await;
    assert_eq!(released_at.len(), 1);
    let after: Vec<(i64, String)> = intents(&observer)
        .await
        .into_iter()
        .filter(|(_, k)| held.contains(k))
        .collect();
    assert_eq!(after.len(), held.len(), "{after:?}");
    assert!(
        after.iter().all(|(seq, _)| *seq > released_at[0].0),
        "{after:?}"
    );
    assert!(
        w.all_certified()
            .iter()
            .filter(|k| held.contains(k))
            .count()
            == held.len()
    );
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
    observer.close().await;
}

/// Whether the slow run had recorded its end before the release row.
async fn run_finished_early(ledger: &lethe::ledger::Ledger) -> bool {
    let released = rows(ledger, lethe::ledger::Kind::HoldReleased).await;
    let outcomes = rows(ledger, lethe::ledger::Kind::Outcome).await;
    released
        .first()
        .is_some_and(|(r, _)| outcomes.iter().all(|(o, _)| o < r))
}

for_each_db! {
    a_hold_released_mid_run_keeps_them_until_the_next => a_hold_released_during_a_run_protects_its_recordings_until_the_next,
    held_recordings_stay_released_ones_go => held_recordings_stay_and_released_ones_go,
    tampering_with_holds_is_detected => tampering_with_a_hold_is_detected,
    a_run_refuses_a_tampered_hold_index => a_run_refuses_a_hold_index_that_differs_from_the_chain,
    a_hold_placed_mid_run_protects_the_rest => a_hold_placed_during_a_run_protects_what_has_not_started,
}

async fn an_approved_plan_limits_what_a_run_deletes(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let old = months_ago(30);
    let (a, b, c) = (
        format!("calls/quality/{old}/A-1.wav"),
        format!("calls/quality/{old}/B-1.wav"),
        format!("calls/quality/{}/C-1.wav", months_ago(2)),
    );
    for k in [&a, &b, &c] {
        w.put(k, "audio");
    }
    // Reviewed as of next year: C would have expired by then.
    let plan_file = w.path("approved.jsonl");
    let out = w.lethe(&[
        "plan",
        "--as-of",
        "2099-01-01",
        "--out",
        plan_file.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("plan of 3 deletions written to"),
        "{}",
        stderr(&out)
    );
    let sha = lethe::certificate::sha256_hex(&read(&plan_file));
    // After the review: B is put on hold, and D expires but was never reviewed.
    assert_exit(&place(&w, &["--case", "CASE-B", "--key", &b]), 0);
    let d = format!("calls/quality/{old}/D-1.wav");
    w.put(&d, "audio");

    let out = w.lethe(&["run", "--plan", plan_file.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!(
            "approved plan sha256:{sha}: 3 deletions approved; 1 deletions due now were not in it"
        )),
        "{}",
        stdout(&out)
    );
    assert!(!w.exists(&a), "approved and still expired");
    assert!(w.exists(&b), "approved, but held since");
    assert!(w.exists(&c), "approved, but not expired yet");
    assert!(w.exists(&d), "expired, but not approved");
    assert_eq!(w.payload(1)["approved_plan_sha256"], sha);
    assert_eq!(w.manifest_keys(1), vec![a.clone()]);

    // A plan file that is not a list of deletions is refused before anything happens.
    w.write("bad.jsonl", "{\"not\": \"a plan\"}\n");
    let bad = w.lethe(&["run", "--plan", w.path("bad.jsonl").to_str().unwrap()]);
    assert_exit(&bad, 2);
    assert_exit(
        &w.lethe(&["run", "--plan", w.path("missing.jsonl").to_str().unwrap()]),
        2,
    );
    assert!(w.exists(&d));
    // Without a plan, D goes as usual.
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(!w.exists(&d) && w.exists(&b));
}

for_each_db! {
    approved_plans => an_approved_plan_limits_what_a_run_deletes,
}

async fn a_release_can_require_a_second_person(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    w.tail = "\n[holds]\nrelease_approvals = 2\n".into();
    w.write_config();
    let s = sample(&w);
    assert_exit(
        &place(&w, &["--case", "CASE-4E", "--subject", "CUST-123"]),
        0,
    );
    let out = w.lethe(&[
        "hold",
        "release",
        "--case",
        "CASE-4E",
        "--by",
        "j.kowalska",
        "--reason",
        "settled",
    ]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("takes effect once 1 more person(s) approve"),
        "{}",
        stdout(&out)
    );
    let list = w.lethe(&["hold", "list"]);
    assert!(
        stdout(&list).contains("CASE-4E  ACTIVE (release requested by j.kowalska"),
        "{}",
        stdout(&list)
    );
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(
        w.exists(&s.subject_held),
        "still held until a second person approves"
    );
    // The requester cannot approve their own release, nor ask twice.
    let own = w.lethe(&[
        "hold",
        "approve-release",
        "--case",
        "CASE-4E",
        "--by",
        "j.kowalska",
    ]);
    assert_exit(&own, 2);
    assert!(
        stderr(&own).contains("another person must approve it"),
        "{}",
        stderr(&own)
    );
    // Nor under another spelling of the same name.
    for alias in ["J.KOWALSKA", " j.kowalska ", "J.Kowalska"] {
        let out = w.lethe(&[
            "hold",
            "approve-release",
            "--case",
            "CASE-4E",
            "--by",
            alias,
        ]);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("another person must approve it"),
            "{alias:?}: {}",
            stderr(&out)
        );
    }
    assert_exit(
        &w.lethe(&[
            "hold", "release", "--case", "CASE-4E", "--by", "m.nowak", "--reason", "x",
        ]),
        2,
    );
    let approved = w.lethe(&[
        "hold",
        "approve-release",
        "--case",
        "CASE-4E",
        "--by",
        "m.nowak",
    ]);
    assert_exit(&approved, 0);
    assert!(
        stdout(&approved).contains("hold CASE-4E released"),
        "{}",
        stdout(&approved)
    );
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(!w.exists(&s.subject_held));
    let text = stdout(&w.lethe(&["hold", "list", "--all"]));
    assert!(
        text.contains("(requested by j.kowalska, approved by m.nowak): settled"),
        "{text}"
    );
    let all = w.lethe(&["hold", "list", "--all", "--format", "json"]);
    let holds: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(holds[0]["released"]["by"], "j.kowalska");
    assert_eq!(
        holds[0]["released"]["approved_by"],
        serde_json::json!(["m.nowak"])
    );
    assert_exit(
        &w.lethe(&["hold", "approve-release", "--case", "CASE-4E", "--by", "x"]),
        2,
    );
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

for_each_db! {
    two_person_release => a_release_can_require_a_second_person,
}

#[test]
fn a_selector_that_can_never_match_is_refused_and_nothing_is_placed() {
    let w = World::new();
    let s = sample(&w);
    for (args, instead) in [
        (
            ["--prefix", "/calls/disputes/"],
            "write --prefix calls/disputes/",
        ),
        (
            ["--key", &format!("./{}", s.prefix_held)],
            &format!("write --key {}", s.prefix_held),
        ),
        (
            ["--prefix", "calls/disputes/20*"],
            "write --prefix calls/disputes/20",
        ),
        (["--key", "calls//disputes/x.wav"], "no empty segments"),
    ] {
        let mut all = vec!["--case", "CASE-BAD"];
        all.extend_from_slice(&args);
        let out = place(&w, &all);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("can never match") && stderr(&out).contains(instead),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(stdout(&w.lethe(&["hold", "list", "--all"])).contains("no holds"));
    // The case id is still free for the corrected hold, which holds.
    let out = place(&w, &["--case", "CASE-BAD", "--prefix", "calls/disputes/"]);
    assert_exit(&out, 0);
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(w.exists(&s.prefix_held));
    assert!(!w.exists(&s.free));
}

#[test]
fn placing_a_hold_counts_what_it_covers_and_warns_when_nothing() {
    let w = World::new();
    let s = sample(&w);
    let out = place(&w, &["--case", "CASE-C1", "--subject", "CUST-123"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("it covers 1 recording(s) now (2 object(s) with their sidecars"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("WARNING"), "{}", stdout(&out));

    // A prefix no key starts with: placed (exit 0), but loudly reported.
    let out = place(&w, &["--case", "CASE-C2", "--prefix", "calls/Disputes/"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("it covers 0 recording(s) now")
            && stdout(&out).contains("WARNING: hold CASE-C2 covers NO recording now"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("the hold covers no recording now"),
        "{}",
        stderr(&out)
    );
    // --no-scan places it without counting.
    let out = place(
        &w,
        &["--case", "CASE-C3", "--key", &s.prefix_held, "--no-scan"],
    );
    assert_exit(&out, 0);
    assert!(!stdout(&out).contains("it covers 1"), "{}", stdout(&out));
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(w.exists(&s.subject_held) && w.exists(&s.prefix_held));
}
