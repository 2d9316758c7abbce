//! `lethe run`: exactly the expired, unprotected recordings go, with their
//! sidecars and companions; everything else stays; the run is certified.

use crate::*;

/// A store with one recording of every kind of fate.
fn sample(w: &World) -> (Vec<&'static str>, Vec<String>, Vec<String>) {
    let q_old = format!("calls/quality/{}/Q-OLD.wav", months_ago(8));
    let q_new = format!("calls/quality/{}/Q-NEW.wav", months_ago(2));
    let t_old = format!("calls/training/{}/T-OLD.wav", months_ago(14));
    let t_old_sidecar = t_old.replace(".wav", ".json");
    let d_kept = format!("calls/quality/{}/D-KEPT.wav", months_ago(9));
    let d_kept_sidecar = d_kept.replace(".wav", ".json");
    let future = "calls/quality/2099/01/01/FUTURE.wav".to_string();
    let undefined = format!("calls/marketing/{}/M-1.wav", months_ago(30));
    let broken = format!("calls/quality/{}/BROKEN.wav", months_ago(30));
    let broken_sidecar = broken.replace(".wav", ".json");
    let mifid = format!("calls/mifid-orders/{}/O-1.wav", months_ago(50));
    w.put(&q_old, "audio");
    w.put("transcripts/Q-OLD.txt", "transcript");
    w.put(&q_new, "audio");
    w.put("transcripts/Q-NEW.txt", "transcript");
    w.put(&t_old, "audio");
    w.put(
        &t_old_sidecar,
        r#"{"subject":"CUST-1","purposes":["training"]}"#,
    );
    w.put(&d_kept, "audio");
    w.put(&d_kept_sidecar, r#"{"purposes":["disputes"]}"#);
    w.put(&future, "audio");
    w.put(&undefined, "audio");
    w.put(&broken, "audio");
    w.put(&broken_sidecar, "{not json");
    w.put(&mifid, "audio");
    w.put("notes/readme.txt", "not a recording");
    let gone = vec![
        q_old.clone(),
        "transcripts/Q-OLD.txt".into(),
        t_old.clone(),
        t_old_sidecar.clone(),
    ];
    let kept = vec![
        q_new,
        "transcripts/Q-NEW.txt".into(),
        d_kept,
        d_kept_sidecar,
        future,
        undefined,
        broken,
        broken_sidecar,
        mifid,
        "notes/readme.txt".into(),
    ];
    (vec!["Q-OLD", "T-OLD"], gone, kept)
}

#[test]
fn run_deletes_exactly_the_expired_recordings_and_certifies_them() {
    let w = World::new();
    let (_, gone, kept) = sample(&w);
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    for k in &gone {
        assert!(!w.exists(k), "{k} should be gone");
    }
    for k in &kept {
        assert!(w.exists(k), "{k} should remain");
    }
    assert!(
        stdout(&out).contains(&format!("certificate: {}", w.cert(1).display())),
        "{}",
        stdout(&out)
    );

    // The manifest lists exactly the deleted objects, with their roles and bases.
    assert_eq!(sorted(w.manifest_keys(1)), sorted(gone.clone()));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(w.manifest(1))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let q = lines
        .iter()
        .find(|l| l["key"].as_str().unwrap().ends_with("Q-OLD.wav"))
        .unwrap();
    assert_eq!(q["role"], "recording");
    assert_eq!(q["purpose"], "quality");
    assert_eq!(q["basis"], "GDPR Art. 6(1)(f): service quality monitoring");
    assert_eq!(q["result"], "deleted");
    assert_eq!(q["size"], 5);
    let t = lines
        .iter()
        .find(|l| l["key"] == "transcripts/Q-OLD.txt")
        .unwrap();
    assert_eq!(
        (t["role"].as_str(), t["recording"].as_str()),
        (Some("companion"), q["key"].as_str())
    );

    // The certificate: numbered, linked, counted, and naming no key.
    let p = w.payload(1);
    assert_eq!(p["sequence"], 1);
    assert!(p["previous_certificate_sha256"].is_null());
    assert_eq!(p["key_id"], "test-key");
    assert_eq!(p["counts"]["items"], 4);
    assert_eq!(p["counts"]["recordings_deleted"], 2);
    assert_eq!(p["stores"][0]["name"], "recordings");
    assert_eq!(p["stores"][0]["deletion_mode"], "permanent");
    assert_eq!(
        p["method"],
        "deleted through the storage API; absence verified"
    );
    assert_eq!(p["run"]["status"], "completed");
    let policy_sha = lethe::certificate::sha256_hex(POLICY.as_bytes());
    assert_eq!(
        p["policies"][0],
        serde_json::json!({"file": "retention.yaml", "sha256": policy_sha})
    );
    assert_eq!(
        p["manifest_sha256"].as_str().unwrap(),
        lethe::certificate::sha256_hex(&read(&w.manifest(1)))
    );
    let cert_text = String::from_utf8(read(&w.cert(1))).unwrap();
    let payload_text = p.to_string();
    for k in &gone {
        assert!(
            !payload_text.contains(k.as_str()) && !cert_text.contains(k.as_str()),
            "certificate names {k}"
        );
    }

    assert_exit(
        &w.lethe(&["verify", w.cert(1).to_str().unwrap(), "--check-store"]),
        0,
    );
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

#[test]
fn a_second_run_deletes_nothing_and_extends_the_chain() {
    let w = World::new();
    sample(&w);
    assert_exit(&w.lethe(&["run"]), 0);
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("deleted 0 recordings"),
        "{}",
        stdout(&out)
    );
    let p2 = w.payload(2);
    assert_eq!(p2["sequence"], 2);
    assert_eq!(p2["counts"]["items"], 0);
    assert_eq!(
        p2["previous_certificate_sha256"].as_str().unwrap(),
        lethe::certificate::sha256_hex(&read(&w.cert(1)))
    );
    assert_eq!(
        p2["ledger"]["first_seq"].as_i64().unwrap(),
        w.payload(1)["ledger"]["last_seq"].as_i64().unwrap() + 1
    );
    assert!(std::fs::read_to_string(w.manifest(2)).unwrap().is_empty());
    let v = w.lethe(&["verify", w.cert(2).to_str().unwrap()]);
    assert_exit(&v, 0);
    assert!(
        stdout(&v).contains("ok    chain: links to"),
        "{}",
        stdout(&v)
    );
}

#[test]
fn dry_run_deletes_and_records_nothing() {
    let w = World::new();
    let (_, gone, _) = sample(&w);
    let out = w.lethe(&["run", "--dry-run"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("would delete 2 recordings"),
        "{}",
        stdout(&out)
    );
    for k in &gone {
        assert!(w.exists(k));
    }
    assert!(!w.path("lethe.db").exists());
    assert!(!w.cert(1).exists());
}

#[test]
fn a_dry_run_checks_the_signing_key_and_the_ledger_as_a_run_would() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    let (_, gone, _) = sample(&w);
    let key = w.path("keys/lethe.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = w.lethe(&["run", "--dry-run"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("lethe.key"), "{}", stderr(&out));
    std::fs::remove_file(&key).unwrap();
    let out = w.lethe(&["run", "--dry-run"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("lethe.key"), "{}", stderr(&out));
    assert!(gone.iter().all(|k| w.exists(k)));
    assert!(!w.path("lethe.db").exists(), "a dry run creates no ledger");

    // A ledger that cannot be reached fails the dry run as it would the run.
    let mut w = World::new();
    let (_, gone, _) = sample(&w);
    w.env.push((
        "LETHE_DATABASE".into(),
        "postgres://lethe@127.0.0.1:1/none".into(),
    ));
    let out = w.lethe(&["run", "--dry-run"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("cannot read the legal holds"),
        "{}",
        stderr(&out)
    );
    assert!(gone.iter().all(|k| w.exists(k)));
}

#[test]
fn run_refuses_as_of() {
    let w = World::new();
    let (_, gone, _) = sample(&w);
    let out = w.lethe(&["run", "--as-of", "2099-01-01"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("refuses --as-of"), "{}", stderr(&out));
    assert!(gone.iter().all(|k| w.exists(k)));
}

#[test]
fn max_deletions_stops_the_run_before_anything_is_deleted() {
    let mut w = World::new();
    let (_, gone, _) = sample(&w);
    w.safety = "max_deletions = 1\nmax_fraction = 1.0\n".into();
    w.write_config();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 3);
    assert!(
        stdout(&out).contains("STOPPED by a safety limit"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("2 recordings would be deleted, more than max_deletions = 1"),
        "{}",
        stdout(&out)
    );
    assert!(gone.iter().all(|k| w.exists(k)));
    // The stopped run is still on record and certified (with nothing deleted).
    assert_eq!(w.payload(1)["run"]["status"], "stopped-by-safety-limit");
    assert_eq!(w.payload(1)["counts"]["items"], 0);
    // The dry run says the same.
    assert_exit(&w.lethe(&["run", "--dry-run"]), 3);
}

#[test]
fn max_fraction_stops_the_run_before_anything_is_deleted() {
    let mut w = World::new();
    let (_, gone, _) = sample(&w);
    // 2 of the 8 recordings (objects a rule matches) would go: 25%.
    w.safety = "max_deletions = 100\nmax_fraction = 0.2\n".into();
    w.write_config();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 3);
    assert!(
        stdout(&out)
            .contains("2 of 8 recordings (25.0%) would be deleted, more than max_fraction = 0.2"),
        "{}",
        stdout(&out)
    );
    assert!(gone.iter().all(|k| w.exists(k)));
    w.safety = "max_deletions = 100\nmax_fraction = 0.25\n".into();
    w.write_config();
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(gone.iter().all(|k| !w.exists(k)));
}

#[test]
fn logs_are_json_lines_on_stderr_when_not_on_a_terminal_and_never_show_the_key() {
    let w = World::new();
    sample(&w);
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    let mut messages = Vec::new();
    let mut spans = std::collections::BTreeSet::new();
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        if let Some(span) = v["span"].as_object() {
            let named = span.get("store").or(span.get("run_id")).is_some();
            spans.insert((span["name"].as_str().unwrap_or_default().to_string(), named));
        }
    }
    // One span per run and per store, each carrying its id or name.
    assert!(spans.contains(&("run".to_string(), true)), "{spans:?}");
    assert!(spans.contains(&("store".to_string(), true)), "{spans:?}");
    assert!(messages.iter().any(|m| m == "run started"), "{messages:?}");
    assert!(
        messages.iter().any(|m| m == "certificate issued"),
        "{messages:?}"
    );
    let key = std::fs::read_to_string(w.path("keys/lethe.key")).unwrap();
    let secret_line = key.lines().nth(1).unwrap();
    assert!(!err.contains(secret_line) && !stdout(&out).contains(secret_line));
    // Data goes to stdout, logs to stderr: stdout has no log lines.
    assert!(!stdout(&out).contains("\"level\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_run_works_with_a_postgresql_ledger() {
    use sqlx::AssertSqlSafe;
    let admin = sqlx::PgPool::connect(&postgres_url())
        .await
        .expect("the PostgreSQL server at 127.0.0.1:5432 (database test)");
    let schema = format!("lethe_it_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let database = format!("{}?options=-c%20search_path%3D{schema}", postgres_url());

    let w = World::new();
    let (_, gone, kept) = sample(&w);
    let lethe = |args: &[&str]| {
        let mut cmd = w.command(args);
        cmd.env("LETHE_DATABASE", &database);
        cmd.output().unwrap()
    };
    assert_exit(&lethe(&["run"]), 0);
    assert_exit(&lethe(&["run"]), 0);
    assert!(gone.iter().all(|k| !w.exists(k)));
    assert!(kept.iter().all(|k| w.exists(k)));
    assert_eq!(sorted(w.manifest_keys(1)), sorted(gone));
    assert_exit(&lethe(&["ledger", "verify"]), 0);
    assert_exit(&w.lethe(&["verify", w.cert(2).to_str().unwrap()]), 0);
    assert!(
        !w.path("lethe.db").exists(),
        "the SQLite default is not used"
    );

    let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {schema}.ledger"
    )))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(
        rows,
        w.payload(2)["ledger"]["last_seq"].as_i64().unwrap() + 1
    );
    // Tampering is caught on PostgreSQL as well.
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {schema}.ledger SET run_id = 'forged' WHERE seq = 2"
    )))
    .execute(&admin)
    .await
    .unwrap();
    assert_exit(&lethe(&["ledger", "verify"]), 4);
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
}
