//! Bad input gets a clear error naming where, and nothing is lost.

use crate::*;

fn world_with_expired() -> (World, String) {
    let w = World::new();
    let key = format!("calls/quality/{}/C-1.wav", months_ago(30));
    w.put(&key, "audio");
    (w, key)
}

#[test]
fn a_typo_in_the_config_is_an_error_with_line_and_column() {
    let (w, key) = world_with_expired();
    let config = std::fs::read_to_string(w.config())
        .unwrap()
        .replace("max_fraction", "max_fracton");
    std::fs::write(w.config(), config).unwrap();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:11:1: unknown field `max_fracton`",
            w.config().display()
        )),
        "{err}"
    );
    assert!(w.exists(&key));
    assert!(
        !w.path("lethe.db").exists(),
        "nothing may be recorded either"
    );
}

#[test]
fn a_broken_policy_names_file_line_and_column_and_stops_the_run() {
    let (w, key) = world_with_expired();
    w.write(
        "policies/retention.yaml",
        &POLICY.replace("retain: 6 months", "retain: 6 monhts"),
    );
    let out = w.lethe(&["run"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    let file = w.path("policies/retention.yaml");
    assert!(
        err.contains(&format!(
            "{}:6:13: retain: expected a duration",
            file.display()
        )),
        "{err}"
    );
    assert!(w.exists(&key));

    w.write(
        "policies/retention.yaml",
        &POLICY.replace(
            "  - name: contact-centre",
            "  - name: contact-centre\n  oops: [unclosed",
        ),
    );
    let out = w.lethe(&["plan"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(&format!("{}:", file.display())),
        "{}",
        stderr(&out)
    );
    assert!(w.exists(&key));
}

#[test]
fn a_rule_for_an_unknown_store_is_a_policy_error() {
    let (w, key) = world_with_expired();
    w.write(
        "policies/retention.yaml",
        &POLICY.replace("store: recordings", "store: recordings-eu"),
    );
    let out = w.lethe(&["run"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("names store \"recordings-eu\", which lethe.toml does not configure"),
        "{}",
        stderr(&out)
    );
    assert!(w.exists(&key));
}

#[test]
fn an_empty_policy_folder_is_refused() {
    let (w, key) = world_with_expired();
    std::fs::remove_file(w.path("policies/retention.yaml")).unwrap();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("no policy files (*.yaml or *.yml) found"),
        "{}",
        stderr(&out)
    );
    assert!(w.exists(&key));
}

#[test]
fn a_signing_key_readable_by_others_is_refused_before_anything_is_deleted() {
    use std::os::unix::fs::PermissionsExt;
    let (w, key) = world_with_expired();
    std::fs::set_permissions(
        w.path("keys/lethe.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("readable by group or others (mode 0644)"),
        "{}",
        stderr(&out)
    );
    assert!(w.exists(&key));
    // The check applies to the file a link resolves to (Kubernetes Secret volumes are links).
    std::fs::set_permissions(
        w.path("keys/lethe.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink(w.path("keys/lethe.key"), w.path("keys/link.key")).unwrap();
    let mut cmd = w.command(&["run"]);
    cmd.env("LETHE_SIGNING_KEY", w.path("keys/link.key"));
    assert_exit(&cmd.output().unwrap(), 0);
    assert!(!w.exists(&key));
}

#[test]
fn a_missing_signing_key_is_a_usage_error() {
    let (w, key) = world_with_expired();
    let mut cmd = w.command(&["run"]);
    cmd.env("LETHE_SIGNING_KEY", w.path("keys/nope.key"));
    let out = cmd.output().unwrap();
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("nope.key: cannot read it"),
        "{}",
        stderr(&out)
    );
    assert!(w.exists(&key));
}

#[test]
fn an_unreachable_store_fails_alone_and_the_others_are_done_and_certified() {
    let mut w = World::new();
    let key = format!("calls/quality/{}/C-1.wav", months_ago(30));
    w.put(&key, "audio");
    w.extra_stores = "\n[[stores]]\nname = \"archive\"\nurl = \"does-not-exist\"\n".into();
    w.write_config();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("store archive"), "{text}");
    assert!(text.contains("FAILED"), "{text}");
    assert!(!w.exists(&key), "the reachable store is still processed");
    let p = w.payload(1);
    assert_eq!(p["run"]["status"], "completed-with-failures");
    assert_eq!(p["counts"]["recordings_deleted"], 1);
}

#[test]
fn usage_errors_exit_2() {
    let w = World::new();
    assert_exit(&w.lethe(&["frobnicate"]), 2);
    assert_exit(&w.lethe(&["plan", "--format", "yaml"]), 2);
    assert_exit(&w.lethe(&["--help"]), 0);
}

#[test]
fn keygen_refuses_to_overwrite_a_key() {
    let w = World::new();
    let before = read(&w.path("keys/lethe.key"));
    let out = w.lethe(&[
        "keygen",
        "--out",
        w.path("keys/lethe.key").to_str().unwrap(),
    ]);
    assert_exit(&out, 2);
    assert_eq!(read(&w.path("keys/lethe.key")), before);
}

#[test]
fn an_unsupported_database_url_is_a_config_error() {
    let (w, key) = world_with_expired();
    let config = std::fs::read_to_string(w.config())
        .unwrap()
        .replace("sqlite://lethe.db", "mysql://user:hunter2@db/lethe");
    std::fs::write(w.config(), config).unwrap();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("unsupported database URL"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("hunter2"),
        "the password must not be printed"
    );
    assert!(w.exists(&key));
}

#[test]
fn an_unreachable_database_is_a_clear_error_and_nothing_is_deleted() {
    let (mut w, key) = world_with_expired();
    w.env.push((
        "LETHE_DATABASE".into(),
        "postgres://lethe:s3cret@127.0.0.1:1/ledger".into(),
    ));
    let out = w.lethe(&["run"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("cannot open the ledger database postgres://***@127.0.0.1:1/ledger"),
        "{err}"
    );
    assert!(err.contains("nothing was deleted"), "{err}");
    assert!(!err.contains("s3cret"), "the password must not be printed");
    assert!(w.exists(&key));
}

/// The signing key as a Kubernetes Secret volume gives it to a non-root pod
/// with `defaultMode: 0400` and `fsGroup`: `key -> ..data/key`, `..data ->
/// ..<timestamp>/`, the file root-owned, group fsGroup, mode 0440. Needs root
/// to lay out (CI runs as root); elsewhere it says so and checks nothing.
#[test]
fn a_signing_key_mounted_like_a_kubernetes_secret_works_for_a_non_root_user() {
    use std::os::unix::fs::{PermissionsExt, chown, symlink};
    let uid_of_self = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .ok();
    if uid_of_self != Some(0) {
        eprintln!("not root: cannot lay out a root-owned Secret volume; skipped");
        return;
    }
    let (w, key) = world_with_expired();
    let uid = 65532;
    // The pod's user can use the whole installation but the key.
    let chmod_all = |p: &std::path::Path| {
        for e in walkdir::WalkDir::new(p) {
            let e = e.unwrap();
            let mode = if e.file_type().is_dir() { 0o777 } else { 0o666 };
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    chmod_all(w.dir.path());
    let secret = w.path("secret");
    let stamp = secret.join("..2026_11_29_03_00_00.000000001");
    std::fs::create_dir_all(&stamp).unwrap();
    std::fs::copy(w.path("keys/lethe.key"), stamp.join("lethe.key")).unwrap();
    symlink("..2026_11_29_03_00_00.000000001", secret.join("..data")).unwrap();
    symlink("..data/lethe.key", secret.join("lethe.key")).unwrap();
    let file = stamp.join("lethe.key");
    chown(&file, Some(0), Some(uid)).unwrap();
    for dir in [&secret, &stamp] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run = |w: &World| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
        ])
        .arg(env!("CARGO_BIN_EXE_lethe"))
        .arg("--config")
        .arg(w.config())
        .arg("run")
        .current_dir(w.dir.path())
        .env_remove("LETHE_DATABASE")
        .env_remove("LETHE_CONFIG")
        .env("LETHE_SIGNING_KEY", w.path("secret/lethe.key"));
        cmd.output().unwrap()
    };

    // Readable by others: refused, nothing deleted.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let out = run(&w);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("mode 0444"), "{}", stderr(&out));
    assert!(w.exists(&key));
    // Root-owned 0400 with no fsGroup: the pod cannot read it, and says so.
    chown(&file, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    let out = run(&w);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("cannot read it") && stderr(&out).contains("denied"),
        "{}",
        stderr(&out)
    );
    assert!(w.exists(&key));
    // defaultMode 0400 + fsGroup, as the kubelet leaves it: 0440, root:fsGroup.
    chown(&file, Some(0), Some(uid)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o440)).unwrap();
    let out = run(&w);
    assert_exit(&out, 0);
    assert!(!w.exists(&key));
}

#[test]
fn with_json_logs_the_final_error_is_a_json_event_and_nothing_else() {
    let w = World::new();
    std::fs::write(w.path("policies/retention.yaml"), "purposes: [").unwrap();
    let out = w.lethe(&["--log-format", "json", "run"]);
    assert_exit(&out, 2);
    let raw = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!raw.trim().is_empty());
    for line in raw.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{raw}"));
        if event["fields"]["message"] == "command failed" {
            assert!(
                event["fields"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("retention.yaml")),
                "{line}"
            );
            assert_eq!(event["fields"]["exit_code"], 2, "{line}");
        }
    }
    assert!(raw.contains("command failed"), "{raw}");
    // With text logs the error stays one plain line.
    let out = w.lethe(&["--log-format", "text", "run"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_newline_in_a_name_is_escaped_in_the_reason_of_a_text_plan() {
    let w = World::new();
    let old = months_ago(30);
    w.put(&format!("calls/quality/{old}/C-1.wav"), "audio");
    // The sidecar's name has a newline; its reason quotes it.
    w.put(&format!("calls/quality/{old}/C\nDELETE x.wav"), "audio");
    let out = w.lethe(&["plan"]);
    let text = stdout(&out);
    assert!(
        text.lines()
            .all(|l| !l.starts_with("DELETE x.wav") && !l.starts_with("x.wav")),
        "{text}"
    );
    assert!(text.contains("C\\nDELETE x.wav"), "{text}");
}

/// The subcommands listed under `Commands:` in a help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_argument_of_every_command_has_a_help_text() {
    let mut missing = Vec::new();
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let mut args = path.clone();
        args.push("--help".into());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
            .args(&args)
            .output()
            .unwrap();
        assert_exit(&out, 0);
        let help = stdout(&out);
        seen += 1;
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if !(line.starts_with("  ") && (t.starts_with('-') || t.starts_with('<'))) {
                continue;
            }
            // Text on the same line, or (long help) on the lines below it.
            let same_line = t.split("  ").skip(1).any(|s| !s.trim().is_empty());
            let below = lines.get(i + 1).is_some_and(|n| {
                let nt = n.trim_start();
                !nt.is_empty() && !nt.starts_with('-') && n.len() - nt.len() > line.len() - t.len()
            });
            if !same_line && !below {
                missing.push(format!("lethe {}: {}", path.join(" "), t.trim_end()));
            }
        }
        for c in subcommands(&help) {
            let mut next = path.clone();
            next.push(c);
            queue.push(next);
        }
    }
    assert!(seen > 15, "only {seen} help pages walked");
    assert!(
        missing.is_empty(),
        "arguments without help:\n{}",
        missing.join("\n")
    );
    // `hold place` says that a selector is required.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["hold", "place", "--help"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("at least one selector"),
        "{}",
        stdout(&out)
    );
}

/// Where the final error is printed, a cause whose text the one before
/// already contains is left out: sqlx repeats PostgreSQL's message in its
/// own, and the key writer its reason.
#[test]
fn a_postgresql_role_that_does_not_exist_is_said_once() {
    let (mut w, key) = world_with_expired();
    w.env.push((
        "LETHE_DATABASE".into(),
        "postgres://no_such_role_lethe@127.0.0.1:5432/test".into(),
    ));
    let out = w.lethe(&["--log-format", "text", "run"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert_eq!(
        line.matches("role \"no_such_role_lethe\" does not exist")
            .count(),
        1,
        "{err}"
    );
    assert!(line.contains("cannot open the ledger database"), "{err}");
    assert!(w.exists(&key));
}

#[test]
fn keygen_says_once_that_it_refuses_to_overwrite_a_key() {
    let w = World::new();
    let path = w.path("keys/lethe.key");
    let out = w.lethe(&[
        "--log-format",
        "text",
        "keygen",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert_eq!(
        line.matches("refusing to overwrite a key").count(),
        1,
        "{err}"
    );
    assert!(line.contains(path.to_str().unwrap()), "{err}");
}

#[test]
fn demo_with_a_file_as_its_folder_names_the_file_and_leaves_it_alone() {
    let w = World::new();
    w.write("taken", "mine");
    let path = w.path("taken");
    let out = w.lethe(&["demo", "--dir", path.to_str().unwrap()]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(&format!("--dir {}: not a folder", path.display())),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
}

#[test]
fn a_policy_folder_with_only_an_upper_case_extension_names_the_file_it_ignored() {
    let (w, key) = world_with_expired();
    std::fs::rename(
        w.path("policies/retention.yaml"),
        w.path("policies/retention.YAML"),
    )
    .unwrap();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("ignored: \"retention.YAML\" (the extension must be lower case)"),
        "{}",
        stderr(&out)
    );
    assert!(w.exists(&key));
}

#[test]
fn a_policy_file_with_two_yaml_documents_says_one_document_per_file_where_the_second_starts() {
    let (w, key) = world_with_expired();
    w.write(
        "policies/retention.yaml",
        &format!("{POLICY}---\npurposes: {{}}\n"),
    );
    let line = POLICY.lines().count() + 1;
    let out = w.lethe(&["run"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "retention.yaml:{line}:1: a second YAML document: one YAML document per policy file"
        )),
        "{err}"
    );
    assert!(!err.contains("from_str_multiple"), "{err}");
    assert!(w.exists(&key));
}

#[test]
fn a_max_clock_skew_beyond_an_hour_is_accepted_with_a_warning_in_the_log_and_the_output() {
    let (mut w, key) = world_with_expired();
    w.safety.push_str("max_clock_skew = \"2h\"\n");
    w.write_config();
    let out = w.lethe(&["--log-format", "json", "run"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("WARNING: [safety] max_clock_skew is 7200 s, more than an hour"),
        "{}",
        stdout(&out)
    );
    let warned = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|e| e["level"] == "WARN" && e["fields"]["max_clock_skew_seconds"] == 7200);
    assert!(warned, "{}", stderr(&out));
    assert!(!w.exists(&key));
    // An hour is no warning.
    w.safety = w.safety.replace("\"2h\"", "\"1h\"");
    w.write_config();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    assert!(!stdout(&out).contains("max_clock_skew"), "{}", stdout(&out));
}

/// The README's rule as PostgreSQL applies it: a root-owned key may be
/// group-readable (0640) for a lethe that is not root; lethe running as
/// root owns the file, so 0640 is refused and the message says why. Needs
/// root (CI runs as root); elsewhere it says so and checks nothing.
#[test]
fn a_root_owned_key_of_mode_0640_is_refused_to_root_with_the_reason_and_accepted_for_another_user()
{
    use std::os::unix::fs::{PermissionsExt, chown};
    let uid_of_self = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .ok();
    if uid_of_self != Some(0) {
        eprintln!("not root: cannot lay out a root-owned key for another user; skipped");
        return;
    }
    let (w, key) = world_with_expired();
    let file = w.path("keys/lethe.key");
    chown(&file, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("mode 0640")
            && stderr(&out).contains("lethe runs as root, so the key is its own"),
        "{}",
        stderr(&out)
    );
    assert!(w.exists(&key));
    // The same file for a lethe of uid 65532 in the key's group: accepted.
    let uid = 65532u32;
    for e in walkdir::WalkDir::new(w.dir.path()) {
        let e = e.unwrap();
        let mode = if e.file_type().is_dir() { 0o777 } else { 0o666 };
        if e.path() != file {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    chown(&file, Some(0), Some(uid)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
        ])
        .arg(env!("CARGO_BIN_EXE_lethe"))
        .arg("--config")
        .arg(w.config())
        .arg("run")
        .current_dir(w.dir.path())
        .env_remove("LETHE_DATABASE")
        .env_remove("LETHE_CONFIG")
        .env_remove("LETHE_SIGNING_KEY")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(!w.exists(&key));
}

/// In JSON log mode stderr is JSON lines and nothing else, whatever the
/// failure: each of these fails with every stderr line a JSON event.
#[tokio::test]
async fn with_json_logs_every_failure_writes_only_json_lines_to_stderr() {
    let w = World::new();
    let ledger = w.ledger().await;
    let other = lethe::ledger::Holder {
        run_id: "run-elsewhere".into(),
        host: "node-b.example".into(),
        pid: 1,
        pass: None,
        pid_scope: None,
    };
    let lease = ledger
        .acquire_lease(
            lethe::ledger::RETENTION_LEASE,
            &other,
            std::time::Duration::from_secs(600),
        )
        .await
        .unwrap();
    let missing = World::new();
    std::fs::remove_file(missing.config()).unwrap();
    // (what, where, arguments, exit code, what the error says)
    let cases: Vec<(&str, &World, Vec<&str>, i32, &str)> = vec![
        (
            "missing config",
            &missing,
            vec!["run"],
            2,
            "cannot read config file",
        ),
        (
            "bad --shard",
            &w,
            vec!["run", "--shard", "5/2"],
            2,
            "expected I/N",
        ),
        (
            "unknown hold",
            &w,
            vec!["hold", "show", "NO-SUCH-CASE"],
            2,
            "no hold for case NO-SUCH-CASE",
        ),
        (
            "bad --as-of",
            &w,
            vec!["plan", "--as-of", "yesterday-ish"],
            2,
            "is not a time",
        ),
        ("lease held", &w, vec!["run"], 1, "holds the run lease"),
    ];
    for (what, world, args, code, needle) in cases {
        let mut all = vec!["--log-format", "json"];
        all.extend(args);
        let out = world.lethe(&all);
        let raw = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{what}: {raw}");
        assert!(
            raw.contains("command failed") && raw.contains(needle),
            "{what}: {raw}"
        );
        for line in raw.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{what}: not a JSON line: {line:?}\n{raw}"
            );
        }
    }
    ledger.release_lease(&lease).await.unwrap();
}
