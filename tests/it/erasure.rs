//! `lethe erase`: a data subject's recordings go now, except what a hold or a
//! legal obligation protects; a signed receipt names the kept ones with their
//! basis and no case or other person; a later run erases what comes back.

use crate::*;

const ORDERS_POLICY: &str = r#"
recordings:
  - name: trading-desk
    store: recordings
    match: "orders/{subject}/{recorded:%Y/%m/%d}/{call_id}.wav"
    purposes: [mifid-orders]
"#;

struct Sample {
    /// The subject's recordings that go (keys), and their companions.
    erased: Vec<String>,
    /// The subject's recordings that stay: held, and under a legal minimum.
    held: String,
    minimum: String,
    /// Other people's recordings.
    others: Vec<String>,
}

fn sample(w: &World) -> Sample {
    w.write("policies/orders.yaml", ORDERS_POLICY);
    let recent = months_ago(1);
    let old = months_ago(30);
    // Subject CUST-123 by sidecar, one recent (retention not yet run out), one old.
    let a = format!("calls/quality/{recent}/A-1.wav");
    let b = format!("calls/disputes/{old}/B-1.wav");
    let held = format!("calls/disputes/{recent}/H-1.wav");
    for k in [&a, &b, &held] {
        w.put(k, "audio");
        w.put(&k.replace(".wav", ".json"), r#"{"subject":"CUST-123"}"#);
    }
    w.put("transcripts/A-1.txt", "text");
    // Subject CUST-123 by key capture, under the MiFID II minimum.
    let minimum = format!("orders/CUST-123/{recent}/O-1.wav");
    w.put(&minimum, "audio");
    // Other subjects.
    let others = vec![
        format!("calls/quality/{recent}/X-1.wav"),
        format!("orders/CUST-999/{recent}/O-2.wav"),
    ];
    w.put(&others[0], "audio");
    w.put(
        &others[0].replace(".wav", ".json"),
        r#"{"subject":"CUST-999"}"#,
    );
    w.put(&others[1], "audio");
    let erased = vec![
        a.clone(),
        a.replace(".wav", ".json"),
        "transcripts/A-1.txt".to_string(),
        b.clone(),
        b.replace(".wav", ".json"),
    ];
    Sample {
        erased,
        held,
        minimum,
        others,
    }
}

async fn erasure_removes_exactly_the_subjects_unprotected_recordings(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let s = sample(&w);
    assert_exit(
        &w.lethe(&[
            "hold",
            "place",
            "--case",
            "CASE-SECRET-7",
            "--by",
            "legal",
            "--reason",
            "litigation with another party",
            "--key",
            &s.held,
        ]),
        0,
    );
    // A dry run shows the same and changes nothing.
    let dry = w.lethe(&[
        "erase",
        "--subject",
        "CUST-123",
        "--request",
        "DSR-2026-0042",
        "--dry-run",
    ]);
    assert_exit(&dry, 0);
    assert!(
        stdout(&dry).contains("would delete 2 recordings"),
        "{}",
        stdout(&dry)
    );
    assert!(s.erased.iter().all(|k| w.exists(k)));

    let out = w.lethe(&[
        "erase",
        "--subject",
        "CUST-123",
        "--request",
        "DSR-2026-0042",
    ]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("erasure request DSR-2026-0042: erasing 2 of the subject's recordings; 2 of the subject's objects kept"),
        "{text}"
    );
    for k in &s.erased {
        assert!(!w.exists(k), "{k} should be erased");
    }
    assert!(w.exists(&s.held) && w.exists(&s.minimum));
    for k in &s.others {
        assert!(w.exists(k), "{k} belongs to someone else");
    }

    // The receipt: a certificate of its own kind, listing only the subject's objects.
    let receipt = w.payload(1);
    assert_eq!(receipt["certificate"], "lethe erasure receipt");
    assert_eq!(receipt["erasure"]["request"], "DSR-2026-0042");
    assert_eq!(
        receipt["erasure"]["subject_sha256"],
        lethe::certificate::sha256_hex(b"CUST-123")
    );
    assert_eq!(sorted(w.manifest_keys(1)), sorted(s.erased.clone()));
    let lines = std::fs::read_to_string(w.manifest(1)).unwrap();
    assert!(
        lines
            .lines()
            .all(|l| l.contains("GDPR Art. 17(1): erasure request DSR-2026-0042")),
        "{lines}"
    );
    let protected = receipt["erasure"]["protected"].as_array().unwrap();
    let basis_of = |key: &str| {
        protected.iter().find(|p| p["key"] == key).unwrap()["basis"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        basis_of(&s.held).starts_with("GDPR Art. 17(3)(e)"),
        "{protected:?}"
    );
    assert!(
        basis_of(&s.minimum)
            .starts_with("GDPR Art. 17(3)(b): legal obligation to keep it (MiFID II Art. 16(7))"),
        "{protected:?}"
    );
    let whole = std::fs::read_to_string(w.cert(1)).unwrap() + &receipt.to_string() + &lines;
    // It names no case and no other person (the subject's own keys may carry its id).
    for secret in ["CASE-SECRET-7", "litigation", "CUST-999", "X-1", "O-2"] {
        assert!(
            !whole.contains(secret),
            "the receipt must not name {secret}"
        );
    }
    assert_exit(
        &w.lethe(&["verify", w.cert(1).to_str().unwrap(), "--check-store"]),
        0,
    );

    // Restored from a backup later: the next run erases it again, and says why.
    w.put(&s.erased[0], "restored audio");
    w.put(&s.erased[1], r#"{"subject":"CUST-123"}"#);
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(!w.exists(&s.erased[0]));
    let certificate = w.payload(2);
    assert_eq!(certificate["certificate"], "lethe deletion certificate");
    let lines = std::fs::read_to_string(w.manifest(2)).unwrap();
    assert!(
        lines.contains("\"purpose\":\"erasure\"")
            && lines.contains("erasure request DSR-2026-0042"),
        "{lines}"
    );
    assert!(w.exists(&s.held) && w.exists(&s.minimum) && s.others.iter().all(|k| w.exists(k)));

    // A request id names one subject.
    let reused = w.lethe(&[
        "erase",
        "--subject",
        "CUST-999",
        "--request",
        "DSR-2026-0042",
    ]);
    assert_exit(&reused, 2);
    assert!(
        stderr(&reused).contains("already used for another subject"),
        "{}",
        stderr(&reused)
    );
    assert!(s.others.iter().all(|k| w.exists(k)));
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);

    // The erased subject stays remembered: removing it from the index is caught.
    w.exec("DELETE FROM erasure").await;
    let out = w.lethe(&["ledger", "verify"]);
    assert_exit(&out, 4);
    assert!(
        stdout(&out).contains("erasure request DSR-2026-0042 (ledger row"),
        "{}",
        stdout(&out)
    );
}

async fn erasure_waits_for_an_interrupted_run_to_be_certified(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let s = sample(&w);
    assert_exit(&w.lethe(&["run"]), 0);
    // Simulate a run that recorded an intent and was killed.
    let ledger = w.ledger().await;
    let intent = lethe::execute::Intent {
        store: "recordings".into(),
        key: s.others[0].clone(),
        role: lethe::execute::Role::Recording,
        recording: s.others[0].clone(),
        size: 5,
        e_tag: None,
        purposes: vec!["quality".into()],
        recorded_at: chrono::Utc::now(),
        expires_at: chrono::Utc::now(),
        rules: vec!["contact-centre".into()],
        purpose: "quality".into(),
        basis: "b".into(),
    };
    use lethe::execute::Journal;
    ledger
        .journal("crashed")
        .record_intents(&[lethe::execute::IntentGroup {
            target: None,
            intents: vec![intent],
        }])
        .await
        .unwrap();
    ledger.close().await;
    let out = w.lethe(&["erase", "--subject", "CUST-123", "--request", "DSR-1"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("run `lethe run` first"),
        "{}",
        stderr(&out)
    );
    // The first run took the expired ones; the recent recording is the erasure's.
    let recent = &s.erased[..3];
    assert!(recent.iter().all(|k| w.exists(k)), "nothing was erased");
    // After a run completes the interrupted work, the erasure proceeds.
    assert_exit(&w.lethe(&["run"]), 0);
    assert_exit(
        &w.lethe(&["erase", "--subject", "CUST-123", "--request", "DSR-1"]),
        0,
    );
    assert!(recent.iter().all(|k| !w.exists(k)));
}

for_each_db! {
    erasure_removes_exactly_the_subjects_unprotected_recordings => erasure_removes_exactly_the_subjects_unprotected_recordings,
    erasure_waits_for_interrupted_runs => erasure_waits_for_an_interrupted_run_to_be_certified,
}

/// Every object lethe can attribute to the subject and does not erase is in
/// the receipt with its reason; a dry run names what would go; a request that
/// finds nothing says so, loudly and in its receipt.
async fn the_receipt_lists_everything_of_the_subject_not_erased(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    w.write(
        "policies/cust.yaml",
        r#"
recordings:
  - name: by-customer
    store: recordings
    match: "cust/{subject}/{purpose}/{call_id}.wav"
    sidecar: "cust/{subject}/{purpose}/{call_id}.json"
"#,
    );
    let old = months_ago(3);
    let undefined = "cust/CUST-1/marketing/B.wav".to_string();
    let erased = "cust/CUST-1/quality/A.wav".to_string();
    let bad_field = format!("calls/quality/{old}/S-1.wav");
    let cut_short = format!("calls/quality/{old}/S-2.wav");
    let future = "calls/quality/2099/01/01/F-1.wav".to_string();
    for k in [&undefined, &erased, &bad_field, &cut_short, &future] {
        w.put(k, "audio");
    }
    w.put(
        &bad_field.replace(".wav", ".json"),
        r#"{"subject":"CUST-1","purposes":"disputes"}"#,
    );
    w.put(
        &cut_short.replace(".wav", ".json"),
        r#"{"subject": "CUST-1", "purp"#,
    );
    w.put(&future.replace(".wav", ".json"), r#"{"subject":"CUST-1"}"#);

    let dry = w.lethe(&[
        "erase",
        "--subject",
        "CUST-1",
        "--request",
        "DSR-7",
        "--dry-run",
    ]);
    assert_exit(&dry, 0);
    let text = stdout(&dry);
    assert!(
        text.contains(&format!("would erase recordings: {erased}")),
        "{text}"
    );
    assert!(
        text.contains("would erase 1 of the subject's recordings; 4 of the subject's objects kept"),
        "{text}"
    );

    let out = w.lethe(&["erase", "--subject", "CUST-1", "--request", "DSR-7"]);
    assert_exit(&out, 0);
    assert!(!w.exists(&erased));
    for k in [&undefined, &bad_field, &cut_short, &future] {
        assert!(w.exists(k), "{k} could not be classified and stays");
    }
    let receipt = w.payload(1);
    let protected = receipt["erasure"]["protected"].as_array().unwrap();
    let reasons: std::collections::BTreeMap<String, String> = protected
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap().to_string(),
                p["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (undefined, "undefined-purpose"),
            (bad_field, "unreadable-sidecar"),
            (cut_short, "unreadable-sidecar"),
            (future, "future-dated"),
        ]
        .into_iter()
        .map(|(k, r)| (k, r.to_string()))
        .collect(),
        "{protected:?}"
    );
    assert!(receipt["erasure"].get("notice").is_none());

    // Nothing of this subject anywhere: a warning, and the receipt says so.
    let none = w.lethe(&["erase", "--subject", "CUST-404", "--request", "DSR-8"]);
    assert_exit(&none, 0);
    assert!(
        stdout(&none).contains("WARNING: no object attributable to this subject"),
        "{}",
        stdout(&none)
    );
    assert!(stderr(&none).contains("found nothing"), "{}", stderr(&none));
    let receipt = w.payload(2);
    assert_eq!(
        receipt["erasure"]["notice"].as_str().unwrap(),
        lethe::certificate::NOTHING_FOUND
    );
}

for_each_db! {
    the_receipt_lists_what_is_not_erased => the_receipt_lists_everything_of_the_subject_not_erased,
}
