//! `lethe plan`: what a run would do, now or at another time; deletes nothing.

use crate::*;

fn world_with_dates() -> World {
    let w = World::new();
    w.put("calls/quality/2025/05/31/C-1.wav", "a");
    w.put(
        "calls/quality/2025/05/31/C-1.json",
        r#"{"purposes":["feedback"]}"#,
    );
    w.put("calls/training/2099/01/01/C-2.wav", "b");
    w.put("calls/gossip/2020/01/01/C-3.wav", "c");
    w.put("calls/quality/2025/02/30/C-4.wav", "d");
    w.put("misc/readme.txt", "e");
    w
}

#[test]
fn plan_as_of_applies_calendar_months() {
    let w = world_with_dates();
    // 31 May + 6 months = 30 November (not 1 December, not 27 November); the
    // key has no time of day, so the period ends with the end of 30 November.
    let before = w.lethe(&["plan", "--as-of", "2025-11-30T23:59:59Z"]);
    assert_exit(&before, 0);
    assert!(stdout(&before).contains("KEEP   calls/quality/2025/05/31/C-1.wav  kept until 2025-12-01T00:00:00Z for quality (6 months); counted to the end of the day, as 2025-05-31 (UTC) has no time of day in the key"), "{}", stdout(&before));
    let after = w.lethe(&["plan", "--as-of", "2025-12-01"]);
    assert_exit(&after, 0);
    let text = stdout(&after);
    assert!(text.contains("DELETE calls/quality/2025/05/31/C-1.wav  quality expired 2025-12-01T00:00:00Z (6 months retention); counted to the end of the day, as 2025-05-31 (UTC) has no time of day in the key; with sidecar calls/quality/2025/05/31/C-1.json\n"), "{text}");
    // Its transcript was not listed: the plan names no companion to delete.
    assert!(!text.contains("transcripts/C-1.txt"), "{text}");
    // Everything that cannot be established is reported with its reason.
    assert!(
        text.contains("REPORT calls/training/2099/01/01/C-2.wav  kept: recorded in the future"),
        "{text}"
    );
    assert!(text.contains("REPORT calls/gossip/2020/01/01/C-3.wav  kept: purpose gossip is not defined by any policy"), "{text}");
    assert!(
        text.contains(
            "REPORT calls/quality/2025/02/30/C-4.wav  kept: recording date cannot be read"
        ),
        "{text}"
    );
    assert!(
        text.contains("REPORT misc/readme.txt  kept: matches no recording rule"),
        "{text}"
    );
    // A plan deletes nothing, and needs no ledger.
    assert!(w.exists("calls/quality/2025/05/31/C-1.wav"));
    assert!(!w.path("lethe.db").exists());
}

#[test]
fn plan_json_is_one_document_with_every_item() {
    let w = world_with_dates();
    let out = w.lethe(&["plan", "--as-of", "2026-01-01", "--format", "json"]);
    assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["as_of"], "2026-01-01T00:00:00Z");
    let items = doc["stores"][0]["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    let c1 = items
        .iter()
        .find(|i| i["key"] == "calls/quality/2025/05/31/C-1.wav")
        .unwrap();
    assert_eq!(c1["action"], "delete");
    assert_eq!(c1["purposes"], serde_json::json!(["feedback", "quality"]));
    assert_eq!(c1["purpose"], "quality");
    assert_eq!(c1["expires_at"], "2025-12-01T00:00:00Z");
    assert_eq!(
        c1["sidecars"][0]["key"],
        "calls/quality/2025/05/31/C-1.json"
    );
    let codes: Vec<&str> = items.iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(
        sorted(codes.iter().map(|s| s.to_string()).collect()),
        vec![
            "expired",
            "future-dated",
            "no-rule",
            "undefined-purpose",
            "unreadable-date"
        ]
    );
    assert_eq!(doc["stores"][0]["stats"]["delete"], 1);
    assert_eq!(doc["stores"][0]["stats"]["owned"], 1);
    assert_eq!(doc["safety"]["ok"], true);
}

/// A companion is known from the listing the plan already makes: the plan
/// names the transcripts that exist, with their size, and no other.
#[test]
fn a_plan_names_the_companions_the_listing_showed_and_only_those() {
    let w = World::new();
    for id in ["C-1", "C-2"] {
        w.put(&format!("calls/quality/2025/05/31/{id}.wav"), "a");
    }
    w.put("transcripts/C-1.txt", "twelve bytes");
    let out = w.lethe(&["plan", "--as-of", "2026-01-01"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("C-1.wav  quality expired 2025-12-01T00:00:00Z (6 months retention); counted to the end of the day, as 2025-05-31 (UTC) has no time of day in the key; with companion transcripts/C-1.txt\n"),
        "{text}"
    );
    assert!(!text.contains("transcripts/C-2.txt"), "{text}");
    let out = w.lethe(&["plan", "--as-of", "2026-01-01", "--format", "json"]);
    assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = doc["stores"][0]["items"].as_array().unwrap();
    let item = |id: &str| {
        items
            .iter()
            .find(|i| i["key"] == format!("calls/quality/2025/05/31/{id}.wav"))
            .unwrap()
    };
    let listed = item("C-1")["companion_objects"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["key"], "transcripts/C-1.txt");
    assert_eq!(listed[0]["size"], 12);
    assert_eq!(
        item("C-1")["companions"],
        serde_json::json!(["transcripts/C-1.txt"])
    );
    assert_eq!(item("C-2")["companion_objects"], serde_json::json!([]));
}

#[test]
fn plan_looks_back_as_well() {
    let w = world_with_dates();
    let out = w.lethe(&["plan", "--as-of", "2020-06-01"]);
    assert_exit(&out, 0);
    // In 2020 the 2025 recording was "in the future".
    assert!(
        stdout(&out)
            .contains("REPORT calls/quality/2025/05/31/C-1.wav  kept: recorded in the future"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn plan_rejects_a_bad_time() {
    let w = world_with_dates();
    let out = w.lethe(&["plan", "--as-of", "next tuesday"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("--as-of \"next tuesday\" is not a time"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_shows_a_safety_breach_without_failing() {
    let mut w = world_with_dates();
    w.safety = "max_deletions = 0\nmax_fraction = 1.0\n".into();
    w.write_config();
    let out = w.lethe(&["plan", "--as-of", "2026-01-01"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("safety: a run would stop here and delete nothing: 1 recordings would be deleted, more than max_deletions = 0"), "{}", stdout(&out));
}

#[test]
fn config_is_found_through_the_environment_then_the_working_folder() {
    let w = world_with_dates();
    let run = |envvar: Option<&std::path::Path>, cwd: &std::path::Path| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"));
        cmd.args(["plan", "--as-of", "2026-01-01"])
            .current_dir(cwd)
            .env_remove("LETHE_CONFIG");
        if let Some(p) = envvar {
            cmd.env("LETHE_CONFIG", p);
        }
        cmd.output().unwrap()
    };
    let elsewhere = tempfile::tempdir().unwrap();
    assert_exit(&run(Some(&w.config()), elsewhere.path()), 0);
    assert_exit(&run(None, w.dir.path()), 0);
    let missing = run(None, elsewhere.path());
    assert_exit(&missing, 2);
    assert!(
        stderr(&missing).contains("cannot read config file lethe.toml"),
        "{}",
        stderr(&missing)
    );
}
