//! How operators see lethe: Prometheus metrics (textfile, Pushgateway, the
//! daemon's /metrics) read back through the official Python client's parser
//! (scripts/check-metrics.py), the daemon's schedule, skips and SIGTERM, and
//! the progress bar on a terminal.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::*;

/// One sample as the parser read it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn python() -> String {
    std::env::var("LETHE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("LETHE_TEST_PYTHON (a Python with prometheus_client; ./scripts/test sets it)")
    })
}

fn checker() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-metrics.py")
}

/// Parses exposition text with prometheus_client and the checks on top of it
/// (TYPE/HELP present, no duplicate series, counters end in _total); panics
/// on any problem.
pub fn parse_metrics(source: &[&str], required: &[&str]) -> Vec<Sample> {
    let mut cmd = std::process::Command::new(python());
    cmd.arg(checker()).args(source).arg("--json");
    for r in required {
        cmd.args(["--require", r]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "the metrics do not pass the parser and checks:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Sample {
                name: v["name"].as_str().unwrap().to_string(),
                labels: v["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
                value: v["value"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// The families a run must always expose.
const FAMILIES: &[&str] = &[
    "lethe_objects_scanned_total",
    "lethe_objects_deleted_total",
    "lethe_bytes_deleted_total",
    "lethe_deletions_failed_total",
    "lethe_objects_held",
    "lethe_objects_unclassified",
    "lethe_run_duration_seconds",
    "lethe_last_success_timestamp_seconds",
];

/// Three expired quality recordings (one with a transcript), one expired
/// training recording, one recent, one unclassified.
fn seed(w: &World) {
    let old = months_ago(30);
    for id in ["Q1", "Q2", "Q3"] {
        w.put(&format!("calls/quality/{old}/{id}.wav"), "audio-bytes");
    }
    w.put("transcripts/Q1.txt", "text");
    w.put(&format!("calls/training/{old}/T1.wav"), "audio-bytes");
    w.put(&format!("calls/quality/{}/NEW.wav", months_ago(1)), "audio");
    w.put("misc/unknown.wav", "audio");
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn metrics_file_holds_the_run_figures_in_valid_prometheus_text() {
    let w = World::new();
    seed(&w);
    let file = w.path("textfile/lethe.prom");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let out = w.lethe(&["run", "--metrics-file", file.to_str().unwrap()]);
    assert_exit(&out, 0);
    let m = parse_metrics(&[file.to_str().unwrap()], FAMILIES);
    let store = [("store", "recordings")];
    assert_eq!(
        value(
            &m,
            "lethe_objects_deleted_total",
            &[("store", "recordings"), ("purpose", "quality")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &m,
            "lethe_objects_deleted_total",
            &[("store", "recordings"), ("purpose", "training")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "lethe_objects_scanned_total", &store),
        Some(7.0),
        "every object listed"
    );
    // 4 recordings of 11 bytes and one 4-byte transcript.
    assert_eq!(value(&m, "lethe_bytes_deleted_total", &store), Some(48.0));
    assert_eq!(value(&m, "lethe_deletions_failed_total", &store), Some(0.0));
    assert_eq!(
        value(
            &m,
            "lethe_objects_unclassified",
            &[("store", "recordings"), ("reason", "no-rule")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&m, "lethe_objects_held", &store), Some(0.0));
    assert_eq!(
        value(&m, "lethe_runs_total", &[("status", "completed")]),
        Some(1.0)
    );
    let last = value(&m, "lethe_last_success_timestamp_seconds", &[]).unwrap();
    assert!((unix_now() - last).abs() < 120.0, "last success {last}");
    assert!(value(&m, "lethe_run_duration_seconds", &[]).unwrap() > 0.0);
    assert_eq!(value(&m, "lethe_last_exit_code", &[]), Some(0.0));
    assert!(
        !w.path("textfile").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')),
        "the file is written atomically, no temporary left behind"
    );
}

#[test]
fn a_failed_run_is_visible_in_the_metrics_and_has_no_success_time() {
    let w = World::new();
    seed(&w);
    // A key that cannot be read: the run fails before deleting anything.
    std::fs::write(w.path("keys/lethe.key"), "not a key").unwrap();
    let file = w.path("lethe.prom");
    let out = w.lethe(&["run", "--metrics-file", file.to_str().unwrap()]);
    assert_exit(&out, 2);
    let m = parse_metrics(&[file.to_str().unwrap()], &[]);
    assert_eq!(
        value(&m, "lethe_runs_total", &[("status", "failed")]),
        Some(1.0)
    );
    assert_eq!(value(&m, "lethe_last_exit_code", &[]), Some(2.0));
    assert_eq!(
        value(&m, "lethe_last_success_timestamp_seconds", &[]),
        Some(0.0),
        "no success to report"
    );
}

/// A failed run keeps the last success (read back from the ledger) in the
/// textfile and in its Pushgateway group, instead of writing 0 over it: the
/// "no success for 26 hours" alert must not fire on the first failure.
#[test]
fn a_failed_run_after_a_success_keeps_the_last_success_time_in_the_textfile_and_the_pushgateway() {
    let w = World::new();
    seed(&w);
    let file = w.path("lethe.prom");
    let job = format!("lethe-it-{}", uuid::Uuid::new_v4().simple());
    let group = format!("{}/metrics/job/{job}", pushgateway());
    let pushed_success = || {
        let url = format!("{}/metrics", pushgateway());
        let m = parse_metrics(&["--url", &url, "--ignore-prefix", "push_"], &[]);
        value(&m, "lethe_last_success_timestamp_seconds", &[("job", &job)])
    };
    let run = || {
        w.lethe(&[
            "run",
            "--metrics-file",
            file.to_str().unwrap(),
            "--pushgateway",
            &group,
        ])
    };
    assert_exit(&run(), 0);
    let m = parse_metrics(&[file.to_str().unwrap()], &[]);
    let success = value(&m, "lethe_last_success_timestamp_seconds", &[]).unwrap();
    assert!(
        (unix_now() - success).abs() < 120.0,
        "last success {success}"
    );
    assert_eq!(pushed_success(), Some(success));

    // The key broken: the next run fails before it opens the ledger.
    std::fs::write(w.path("keys/lethe.key"), "not a key").unwrap();
    assert_exit(&run(), 2);
    let m = parse_metrics(&[file.to_str().unwrap()], &[]);
    assert_eq!(value(&m, "lethe_last_exit_code", &[]), Some(2.0));
    assert_eq!(
        value(&m, "lethe_runs_total", &[("status", "failed")]),
        Some(1.0)
    );
    // The ledger keeps milliseconds; the gauge said the same instant.
    let kept = value(&m, "lethe_last_success_timestamp_seconds", &[]).unwrap();
    assert!((kept - success).abs() < 0.01, "{kept} != {success}");
    let pushed = pushed_success().unwrap();
    assert!((pushed - success).abs() < 0.01, "{pushed} != {success}");
    let _ = std::process::Command::new("curl")
        .args(["-s", "-X", "DELETE", &group])
        .output();
}

#[test]
fn a_bad_pushgateway_url_is_refused_before_anything_is_deleted() {
    let w = World::new();
    seed(&w);
    let out = w.lethe(&["run", "--pushgateway", "pushgateway:9091"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--pushgateway"), "{}", stderr(&out));
    assert!(w.exists(&format!("calls/quality/{}/Q1.wav", months_ago(30))));
}

fn pushgateway() -> String {
    std::env::var("LETHE_TEST_PUSHGATEWAY").unwrap_or_else(|_| "http://127.0.0.1:9091".into())
}

#[test]
fn a_batch_run_pushes_its_metrics_to_the_pushgateway_per_shard() {
    let w = World::new();
    seed(&w);
    // A group of this test's own, so that parallel tests do not mix.
    let job = format!("lethe-it-{}", uuid::Uuid::new_v4().simple());
    let group = format!("{}/metrics/job/{job}", pushgateway());
    // The two pods of a split run, at once (a pass's shards plan together).
    for out in w.shards(2, &["--pushgateway", &group]) {
        assert_exit(&out, 0);
        assert!(
            !stderr(&out).contains("cannot push"),
            "push failed: {}",
            stderr(&out)
        );
    }
    let url = format!("{}/metrics", pushgateway());
    let m = parse_metrics(&["--url", &url, "--ignore-prefix", "push_"], &[]);
    let mine: Vec<Sample> = m
        .into_iter()
        .filter(|s| s.labels.get("job") == Some(&job))
        .collect();
    let deleted = |shard: &str| {
        mine.iter()
            .filter(|s| {
                s.name == "lethe_objects_deleted_total"
                    && s.labels.get("shard").map(String::as_str) == Some(shard)
            })
            .map(|s| s.value)
            .sum::<f64>()
    };
    // Each shard's push is a group of its own; together they deleted all four.
    assert_eq!(deleted("0-of-2") + deleted("1-of-2"), 4.0, "{mine:#?}");
    for shard in ["0-of-2", "1-of-2"] {
        assert!(
            value(
                &mine,
                "lethe_last_success_timestamp_seconds",
                &[("shard", shard)]
            )
            .unwrap()
                > 0.0
        );
    }
    // Clean up the gateway (best effort).
    for shard in ["0-of-2", "1-of-2"] {
        let _ = std::process::Command::new("curl")
            .args(["-s", "-X", "DELETE", &format!("{group}/shard/{shard}")])
            .output();
    }
}

/// A running daemon, its stderr lines arriving on a channel.
pub(crate) struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    pub(crate) fn start(w: &World) -> (Daemon, String) {
        Self::spawn(w.command(&["daemon", "--log-format", "json"]))
    }

    /// Starts `cmd` (a `lethe daemon --log-format json`) and waits for it to say it started.
    pub(crate) fn spawn(mut cmd: std::process::Command) -> (Daemon, String) {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child,
            lines,
            seen: Vec::new(),
        };
        let started = d.wait_line("daemon started", Duration::from_secs(30));
        let v: serde_json::Value = serde_json::from_str(&started).unwrap();
        let metrics = v["fields"]["metrics"].as_str().unwrap().to_string();
        // Times in logs are RFC 3339, not Rust's Debug of an Option.
        let next = v["fields"]["next"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(next).is_ok(),
            "next tick {next:?} in {started}"
        );
        (d, metrics)
    }

    /// The daemon's process id, for reading /proc.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no {needle:?} within {timeout:?}:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    pub(crate) fn terminate(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the daemon did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        (status.code().unwrap_or(-1), self.seen.join("\n"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP GET on loopback: (status, body).
fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// Polls the daemon's /metrics until `until` holds (bounded).
pub(crate) fn poll_metrics(
    url: &str,
    what: &str,
    until: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = parse_metrics(&["--url", url], &[]);
        if until(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {what}: {m:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn daemon_world(cron: &str) -> World {
    let mut w = World::new();
    w.tail = format!("\n[schedule]\ncron = \"{cron}\"\n\n[daemon]\nlisten = \"127.0.0.1:0\"\n");
    w.write_config();
    w
}

#[test]
fn the_daemon_runs_on_its_schedule_serves_metrics_and_health_and_stops_on_sigterm() {
    let w = daemon_world("* * * * * *");
    seed(&w);
    let (daemon, url) = Daemon::start(&w);
    let m = poll_metrics(&url, "a completed run", |m| {
        value(m, "lethe_runs_total", &[("status", "completed")]).unwrap_or(0.0) >= 1.0
    });
    let old = months_ago(30);
    assert!(!w.exists(&format!("calls/quality/{old}/Q1.wav")));
    assert!(!w.exists(&format!("calls/training/{old}/T1.wav")));
    assert!(w.exists(&format!("calls/quality/{}/NEW.wav", months_ago(1))));
    assert_eq!(
        value(
            &m,
            "lethe_objects_deleted_total",
            &[("store", "recordings"), ("purpose", "quality")]
        ),
        Some(3.0)
    );
    // The full set of families, well-formed, once a run has completed.
    parse_metrics(&["--url", &url], FAMILIES);
    let base = url.trim_end_matches("/metrics");
    assert_eq!(http_get(&format!("{base}/healthz")), (200, "ok\n".into()));
    assert_eq!(http_get(&format!("{base}/nothing")).0, 404);
    let (code, log) = daemon.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("daemon exits"), "{log}");
    // A clean shutdown logs no error (the scheduler's tasks see their
    // channels close), and in JSON mode every stderr line is a JSON event.
    for line in log.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert_ne!(event["level"], "ERROR", "{line}");
    }
    // Every pass was certified and the chain holds.
    let out = w.lethe(&["ledger", "verify"]);
    assert_exit(&out, 0);
    let out = w.lethe(&["verify", w.cert(1).to_str().unwrap(), "--check-store"]);
    assert_exit(&out, 0);
}

#[test]
fn the_daemon_refuses_to_start_without_a_schedule_or_with_a_bad_one() {
    let w = World::new();
    let out = w.lethe(&["daemon"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("[schedule]"), "{}", stderr(&out));
    let w = daemon_world("0 3 * * *");
    let out = w.lethe(&["daemon"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("has 5 fields"), "{}", stderr(&out));
    // Valid, but no date matches it: a config error, not a daemon waiting forever.
    let w = daemon_world("0 0 3 31 2 *");
    let out = w.lethe(&["daemon"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("cron \"0 0 3 31 2 *\" never fires"),
        "{}",
        stderr(&out)
    );
    // Its address taken: a clear runtime error, not a daemon without metrics.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut w = daemon_world("0 0 3 * * *");
    w.tail = w
        .tail
        .replace("127.0.0.1:0", &taken.local_addr().unwrap().to_string());
    w.write_config();
    let out = w.lethe(&["daemon"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("cannot listen on"),
        "{}",
        stderr(&out)
    );
}

/// A restarted daemon serves the last success the ledger remembers before
/// its first pass, not 0.
#[test]
fn a_restarted_daemon_reports_the_last_success_before_its_first_pass() {
    let w = daemon_world("0 0 3 * * *");
    seed(&w);
    let file = w.path("lethe.prom");
    assert_exit(
        &w.lethe(&["run", "--metrics-file", file.to_str().unwrap()]),
        0,
    );
    let m = parse_metrics(&[file.to_str().unwrap()], &[]);
    let success = value(&m, "lethe_last_success_timestamp_seconds", &[]).unwrap();
    let (daemon, url) = Daemon::start(&w);
    let m = parse_metrics(&["--url", &url], &[]);
    assert_eq!(
        value(&m, "lethe_runs_total", &[("status", "completed")]),
        None
    );
    let served = value(&m, "lethe_last_success_timestamp_seconds", &[]).unwrap();
    assert!((served - success).abs() < 0.01, "{served} != {success}");
    let (code, log) = daemon.terminate();
    assert_eq!(code, 0, "{log}");
}

/// What every pass needs is checked before the daemon starts, so a daemon
/// never runs on whose every pass would fail: a missing signing key or a
/// ledger that cannot be opened stops it with exit 2 and the reason.
#[test]
fn the_daemon_refuses_to_start_without_its_signing_key_or_its_ledger() {
    let w = daemon_world("0 0 3 * * *");
    std::fs::remove_file(w.path("keys/lethe.key")).unwrap();
    let out = w.lethe(&["daemon"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("lethe.key") && err.contains("does not start"),
        "{err}"
    );
    assert!(!err.contains("daemon started"), "{err}");

    let w = daemon_world("0 0 3 * * *");
    // A ledger path under a regular file: it can never be created.
    w.write("not-a-dir", "");
    let config = std::fs::read_to_string(w.config())
        .unwrap()
        .replace("sqlite://lethe.db", "sqlite://not-a-dir/lethe.db");
    std::fs::write(w.config(), config).unwrap();
    let out = w.lethe(&["daemon"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("ledger") && err.contains("does not start"),
        "{err}"
    );
}

#[test]
fn sigterm_during_a_daemon_pass_finishes_the_batch_certifies_it_as_interrupted_and_exits_0() {
    let w = daemon_world("* * * * * *");
    let old = months_ago(30);
    let keys: Vec<String> = (0..3000)
        .map(|i| format!("calls/quality/{old}/C-{i:05}.wav"))
        .collect();
    for k in &keys {
        w.put(k, "audio");
    }
    let (daemon, _url) = Daemon::start(&w);
    // As soon as the first recording is gone, ask the daemon to stop.
    let deadline = Instant::now() + Duration::from_secs(120);
    while keys.iter().all(|k| w.exists(k)) {
        assert!(Instant::now() < deadline, "no deletion within 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (code, log) = daemon.terminate();
    assert_eq!(code, 0, "{log}");
    let gone: Vec<&String> = keys.iter().filter(|k| !w.exists(k)).collect();
    assert!(
        !gone.is_empty() && gone.len() < keys.len(),
        "the pass stopped part-way: {} of {} gone\n{log}",
        gone.len(),
        keys.len()
    );
    // The pass is on record as interrupted, and its certificate lists exactly what is gone.
    let p = w.payload(1);
    assert_eq!(p["run"]["status"], "interrupted", "{p:#}");
    let certified: std::collections::BTreeSet<String> = w.manifest_keys(1).into_iter().collect();
    let gone: std::collections::BTreeSet<String> = gone.into_iter().cloned().collect();
    assert_eq!(certified, gone);
    assert!(!w.cert(2).exists(), "no second pass started");
    // The next run completes the job.
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    assert!(keys.iter().all(|k| !w.exists(k)));
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

async fn a_tick_that_comes_while_a_pass_runs_is_skipped_not_queued() {
    // PostgreSQL: a lock on the lease table holds the first pass in progress
    // for as long as the test wants (SQLite would time out instead).
    let mut w = daemon_world("* * * * * *");
    w.use_db(Db::Postgres).await;
    seed(&w);
    w.ledger().await.close().await; // the schema exists before the lock
    let mut conn = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&w.database_url())
            .await
            .unwrap()
    };
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("LOCK TABLE lease IN ACCESS EXCLUSIVE MODE")
        .execute(&mut conn)
        .await
        .unwrap();
    {
        let (daemon, url) = Daemon::start(&w);
        let m = tokio::task::spawn_blocking({
            let url = url.clone();
            move || {
                poll_metrics(&url, "two skipped ticks", |m| {
                    value(m, "lethe_runs_skipped_total", &[]).unwrap_or(0.0) >= 2.0
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(value(&m, "lethe_run_in_progress", &[]), Some(1.0));
        assert_eq!(
            value(&m, "lethe_runs_total", &[("status", "failed")]),
            None,
            "no second pass ran into the first"
        );
        sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
        let m = tokio::task::spawn_blocking({
            let url = url.clone();
            move || {
                poll_metrics(&url, "the pass completed", |m| {
                    value(m, "lethe_runs_total", &[("status", "completed")]).unwrap_or(0.0) >= 1.0
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(
            value(&m, "lethe_runs_total", &[("status", "failed")]),
            None,
            "{m:#?}"
        );
        let (code, log) = tokio::task::spawn_blocking(move || daemon.terminate())
            .await
            .unwrap();
        assert_eq!(code, 0, "{log}");
    }
    assert!(!w.exists(&format!("calls/quality/{}/Q1.wav", months_ago(30))));
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_that_comes_while_a_pass_runs_is_skipped_not_queued_postgres() {
    a_tick_that_comes_while_a_pass_runs_is_skipped_not_queued().await;
}

/// Runs lethe under a pseudo-terminal (util-linux `script`): what a person
/// at a terminal sees, stdout and stderr together.
fn on_a_terminal(w: &World, args: &str) -> (i32, String) {
    let line = format!(
        "'{}' --config '{}' {args}",
        env!("CARGO_BIN_EXE_lethe"),
        w.config().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("LETHE_CONFIG")
        .env_remove("LETHE_DATABASE")
        .env_remove("LETHE_LOG")
        .current_dir(w.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("util-linux script");
    (
        code(&out),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn plan_and_run_show_progress_on_a_terminal_and_never_in_json_logs_or_pipes() {
    let w = World::new();
    seed(&w);
    let (c, screen) = on_a_terminal(&w, "plan");
    assert_eq!(c, 0, "{screen}");
    assert!(screen.contains("recordings: 7 objects scanned"), "{screen}");
    assert!(
        screen.contains("total: 4 to delete"),
        "the plan itself: {screen}"
    );

    let (c, screen) = on_a_terminal(&w, "--log-format json run");
    assert_eq!(c, 0, "{screen}");
    assert!(!screen.contains("objects scanned"), "{screen}");
    assert!(screen.contains("\"message\":\"run finished\""), "{screen}");

    seed(&w);
    let (c, screen) = on_a_terminal(&w, "run");
    assert_eq!(c, 0, "{screen}");
    assert!(
        screen.contains("objects scanned") && screen.contains("4 recordings deleted"),
        "{screen}"
    );

    // Not a terminal: no progress line in stderr (a pod's log, a pipe).
    seed(&w);
    let out = w.lethe(&["--log-format", "text", "run"]);
    assert_exit(&out, 0);
    assert!(
        !stderr(&out).contains("objects scanned"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_dry_run_reports_its_figures_but_is_no_retention_success() {
    let w = World::new();
    seed(&w);
    let file = w.path("lethe.prom");
    let out = w.lethe(&["run", "--dry-run", "--metrics-file", file.to_str().unwrap()]);
    assert_exit(&out, 0);
    let m = parse_metrics(&[file.to_str().unwrap()], &[]);
    assert_eq!(
        value(&m, "lethe_runs_total", &[("status", "dry-run")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "lethe_last_success_timestamp_seconds", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "lethe_objects_scanned_total",
            &[("store", "recordings")]
        ),
        Some(7.0)
    );
    assert!(w.exists(&format!("calls/quality/{}/Q1.wav", months_ago(30))));
}
