//! The database fails mid-run: PostgreSQL connections killed at random
//! instants (`pg_terminate_backend`), the server unreachable for a while
//! behind a loopback proxy the test pauses and cuts, a worker cut off past
//! its lease while another takes over, and a SQLite ledger on a disk that
//! fills up. Whatever the instant: nothing is deleted without a durable
//! intent, nothing kept is deleted, the run exits 1 (or 0 when the fault
//! missed it, and then it finished everything), and the next run completes
//! and certifies each deleted object exactly once.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::preflight::{Tmpfs, fill};
use crate::*;

/// A loopback TCP proxy in front of the PostgreSQL server. `pause` stops
/// forwarding in both directions and holds the connections open, as a
/// network partition does (new connections are accepted and held too);
/// `resume` lets the bytes through again; `cut` drops every connection.
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    paused: AtomicBool,
    closed: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

impl ProxyState {
    fn hold_while_paused(&self) {
        while self.paused.load(Ordering::SeqCst) && !self.closed.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.closed.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut conns = st.conns.lock().unwrap();
                    conns.push(client.try_clone().unwrap());
                    conns.push(server.try_clone().unwrap());
                }
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let st = st.clone();
                    std::thread::spawn(move || pump(from, to, &st));
                }
            }
        });
        Proxy { port, state }
    }

    fn pause(&self) {
        self.state.paused.store(true, Ordering::SeqCst);
    }

    fn resume(&self) {
        self.state.paused.store(false, Ordering::SeqCst);
    }

    /// Drops every connection; the server is reachable again for new ones
    /// (unless paused).
    fn cut(&self) {
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop so that it sees `closed`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` until either side closes; while paused, nothing
/// is read and what was read is held.
fn pump(mut from: TcpStream, mut to: TcpStream, st: &ProxyState) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        st.hold_while_paused();
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                st.hold_while_paused();
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if st.closed.load(Ordering::SeqCst) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// A tiny deterministic generator, so that a failing trial can be replayed.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(default)
}

const EXPIRED: usize = 3000;
const KEPT: usize = 300;

/// `EXPIRED` expired recordings (a transcript companion for every third)
/// and `KEPT` recent ones: six batches or more to delete. Returns the keys
/// that must go and those that must stay.
fn corpus(w: &World) -> (BTreeSet<String>, BTreeSet<String>) {
    let (old, new) = (months_ago(30), months_ago(1));
    let (mut expired, mut kept) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..EXPIRED {
        let rec = format!("calls/quality/{old}/E-{i:05}.wav");
        w.put(&rec, "audio");
        expired.insert(rec);
        if i % 3 == 0 {
            let t = format!("transcripts/E-{i:05}.txt");
            w.put(&t, "text");
            expired.insert(t);
        }
    }
    for i in 0..KEPT {
        let rec = format!("calls/quality/{new}/K-{i:05}.wav");
        w.put(&rec, "audio");
        kept.insert(rec);
    }
    (expired, kept)
}

/// A PostgreSQL world: its own schema, lethe's connections named `tag`
/// (so that the test kills only them) with the server ending a session
/// idle in a transaction after 2 s (lethe's default is a minute). Returns
/// the direct URL; lethe is pointed at `via` (the proxy's port) if given.
async fn postgres_world(tag: &str, via: Option<u16>) -> (World, String) {
    let mut w = World::new();
    w.use_db(Db::Postgres).await;
    let (_, url) = w.env.iter().find(|(k, _)| k == "LETHE_DATABASE").unwrap();
    let direct = url.replacen(
        "?options=",
        "?options=-c%20idle_in_transaction_session_timeout%3D2000%20",
        1,
    ) + &format!("&application_name={tag}");
    set_database(
        &mut w,
        &match via {
            Some(port) => through(&direct, port),
            None => direct.clone(),
        },
    );
    (w, direct)
}

fn set_database(w: &mut World, url: &str) {
    w.env.retain(|(k, _)| k != "LETHE_DATABASE");
    w.env.push(("LETHE_DATABASE".into(), url.to_string()));
}

/// `url` with its host and port replaced by the proxy's.
fn through(url: &str, port: u16) -> String {
    let at = url.find('@').unwrap() + 1;
    let slash = at + url[at..].find('/').unwrap();
    format!("{}127.0.0.1:{port}{}", &url[..at], &url[slash..])
}

/// The server's host:port in `url`.
fn upstream(url: &str) -> String {
    let at = url.find('@').unwrap() + 1;
    let slash = at + url[at..].find('/').unwrap();
    url[at..slash].to_string()
}

/// The first column of every row of `sql` on the ledger at `url`.
async fn column(url: &str, sql: &str) -> Vec<String> {
    use sqlx::Row;
    let pool = pool_at(url).await;
    let rows = match sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&pool)
        .await
    {
        Ok(rows) => rows,
        // A fault before the first run had created the ledger: it holds
        // nothing (and then nothing may be gone).
        Err(e) if e.to_string().contains("relation \"ledger\" does not exist") => vec![],
        Err(e) => panic!("{sql}: {e}"),
    };
    pool.close().await;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).unwrap())
        .collect()
}

/// Waits (at most a minute) until an intent is pending in the ledger at
/// `url`: a batch's intents are durable, and its deletions under way.
async fn intents_recorded(url: &str, child: &mut Child) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let started = Instant::now();
    // Before the run has made its tables the query fails: nothing pending.
    while sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM pending_intent")
        .fetch_one(&pool)
        .await
        .unwrap_or(0)
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(60) && child.try_wait().unwrap().is_none(),
            "no intent recorded"
        );
    }
    pool.close().await;
}

/// Terminates every backend of lethe's connections named `tag`; returns how many.
async fn kill_backends(admin: &sqlx::PgPool, tag: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()) AS t",
    )
    .bind(tag)
    .fetch_one(admin)
    .await
    .unwrap()
}

fn spawn_run(w: &World) -> Child {
    w.command(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` at most `limit`; kills it and fails past that.
fn finish(mut child: Child, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what}: still running after {limit:?}\n{}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Waits (at most a minute) until one of `keys` is gone.
async fn first_deletion(w: &World, keys: &BTreeSet<String>, child: &mut Child) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if keys.iter().any(|k| !w.exists(k)) {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the run deleted nothing in a minute");
}

/// What must hold after a run the database failed under: exit 1, or 0 with
/// everything done; nothing kept is gone; every object that is gone has an
/// intent in the ledger; every certified object is gone. Returns how many
/// expired objects were gone.
async fn assert_safe(
    w: &World,
    url: &str,
    out: &Output,
    expired: &BTreeSet<String>,
    kept: &BTreeSet<String>,
    trial: &str,
) -> usize {
    let code = code(out);
    assert!(
        code == 0 || code == 1,
        "{trial}: exit {code}\n{}",
        stderr(out)
    );
    for k in kept {
        assert!(w.exists(k), "{trial}: {k} was wrongly deleted");
    }
    let gone: Vec<&String> = expired.iter().filter(|k| !w.exists(k)).collect();
    if code == 0 {
        assert_eq!(gone.len(), expired.len(), "{trial}: exit 0 with work left");
    }
    let intents: BTreeSet<String> = column(
        url,
        "SELECT object_key FROM ledger WHERE kind = 'intent' AND object_key IS NOT NULL",
    )
    .await
    .into_iter()
    .collect();
    for k in &gone {
        assert!(
            intents.contains(*k),
            "{trial}: {k} is gone without an intent in the ledger"
        );
    }
    for k in w.all_certified() {
        assert!(
            !w.exists(&k),
            "{trial}: a certificate claims {k}, which exists"
        );
    }
    gone.len()
}

/// The next run completes everything: exit 0, every expired object gone,
/// nothing kept gone, each deleted object recorded deleted once in the
/// ledger and listed in exactly one certificate, `ledger verify` passes.
async fn assert_settles(
    w: &World,
    url: &str,
    expired: &BTreeSet<String>,
    kept: &BTreeSet<String>,
    trial: &str,
) {
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    for k in expired {
        assert!(!w.exists(k), "{trial}: {k} was not deleted by the next run");
    }
    for k in kept {
        assert!(w.exists(k), "{trial}: {k} was wrongly deleted");
    }
    let certified = w.all_certified();
    let unique: BTreeSet<String> = certified.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        certified.len(),
        "{trial}: an object is certified twice"
    );
    assert_eq!(&unique, expired, "{trial}: the certified set");
    let deleted = column(
        url,
        "SELECT object_key FROM ledger WHERE kind = 'outcome' \
         AND (body LIKE '%\"result\":\"deleted\"%' OR body LIKE '%\"result\":\"already-absent\"%')",
    )
    .await;
    let once: BTreeSet<String> = deleted.iter().cloned().collect();
    assert_eq!(
        once.len(),
        deleted.len(),
        "{trial}: an object is recorded deleted twice"
    );
    assert_eq!(&once, expired, "{trial}: the ledger's deleted objects");
    assert_eq!(
        column(url, "SELECT CAST(COUNT(*) AS TEXT) FROM pending_intent").await,
        vec!["0".to_string()],
        "{trial}: intents left pending"
    );
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

/// Runs over PostgreSQL whose connections are killed (1 to 3 times, at
/// seeded instants of the run's life) or whose server becomes unreachable
/// (the proxy paused 0.5 to 2.5 s, then every connection cut).
/// `LETHE_DB_FAULT_TRIALS` sets the trials (CI: 4; long mode: 40),
/// `LETHE_DB_FAULT_SEED` replays a sequence.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_failing_mid_run_never_deletes_without_an_intent_and_the_next_run_certifies() {
    let trials = env_u64("LETHE_DB_FAULT_TRIALS", 4);
    let mut seed = env_u64("LETHE_DB_FAULT_SEED", 0xdbfa);
    let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();

    // How long an undisturbed run takes here: faults are spread over it.
    let (calibration, _) = postgres_world("lethe-dbfail-calibration", None).await;
    corpus(&calibration);
    let started = Instant::now();
    assert_exit(&calibration.lethe(&["run"]), 0);
    let life = started.elapsed().as_millis().max(500) as u64;
    drop(calibration);

    let (mut killed, mut partitions, mut failed_runs, mut deleted_before) = (0, 0, 0, 0);
    for trial in 0..trials {
        let tag = format!("lethe-dbfail-{}", uuid::Uuid::new_v4().simple());
        let proxy = Proxy::start(upstream(&postgres_url()));
        let (w, direct) = postgres_world(&tag, Some(proxy.port)).await;
        let (expired, kept) = corpus(&w);
        let partition = next(&mut seed).is_multiple_of(3);
        let mut faults: Vec<u64> = (0..1 + next(&mut seed) % 3)
            .map(|_| next(&mut seed) % (life * 11 / 10))
            .collect();
        faults.sort();
        if partition {
            faults.truncate(1);
        }
        let what = format!("trial {trial} (faults at {faults:?} ms, partition {partition})");
        let mut child = spawn_run(&w);
        let started = Instant::now();
        for at in &faults {
            while (started.elapsed().as_millis() as u64) < *at
                && child.try_wait().unwrap().is_none()
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            if partition {
                proxy.pause();
                tokio::time::sleep(Duration::from_millis(500 + next(&mut seed) % 2000)).await;
                proxy.cut();
                proxy.resume();
                partitions += 1;
            } else {
                killed += kill_backends(&admin, &tag).await;
            }
        }
        let out = finish(child, Duration::from_secs(180), &what);
        failed_runs += u64::from(code(&out) == 1);
        deleted_before += assert_safe(&w, &direct, &out, &expired, &kept, &what).await;
        assert_settles(&w, &direct, &expired, &kept, &what).await;
    }
    admin.close().await;
    eprintln!(
        "database faults (PostgreSQL): {trials} trials over {} objects each (undisturbed run {life} ms): {killed} backends killed, {partitions} partitions (paused, then cut); {failed_runs} runs exited 1, {deleted_before} objects deleted before a fault stopped a run, each with its intent; wrongful deletions: 0, uncertified or doubly certified objects: 0",
        EXPIRED + EXPIRED.div_ceil(3) + KEPT
    );
}

/// A worker cut off from the database (the proxy paused) past its lease:
/// another run takes the lease over, completes the first one's pending
/// intents and the rest of the plan, and certifies. When the first worker
/// is back, it records no outcome another run already recorded, starts no
/// deletion (fencing) and exits 1: no object is recorded deleted twice or
/// certified twice. `LETHE_DB_FAULT_TRIALS` / 2 trials (at least two).
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_cut_off_past_its_lease_never_repeats_what_its_successor_did() {
    let trials = (env_u64("LETHE_DB_FAULT_TRIALS", 4) / 2).max(2);
    let mut seed = env_u64("LETHE_DB_FAULT_SEED", 0xdbfa) ^ 0x1ea5e;
    let (mut refused, mut fenced) = (0, 0);
    for trial in 0..trials {
        let tag = format!("lethe-dbfail-{}", uuid::Uuid::new_v4().simple());
        let proxy = Proxy::start(upstream(&postgres_url()));
        let (w, direct) = postgres_world(&tag, Some(proxy.port)).await;
        let (expired, kept) = corpus(&w);
        let mut first = spawn_run(&w);
        // Even trials: the worker is cut off the moment a batch's intents
        // are durable, while it deletes them; the outcomes wait for the
        // database. Odd trials: at a seeded instant after its first
        // deletion, inside a transaction or not (the server ends a session
        // idle in a transaction, and with it the table lock).
        if trial.is_multiple_of(2) {
            intents_recorded(&direct, &mut first).await;
        } else {
            assert!(
                first_deletion(&w, &expired, &mut first).await,
                "trial {trial}: the run ended before deleting"
            );
            tokio::time::sleep(Duration::from_millis(next(&mut seed) % 300)).await;
        }
        proxy.pause();
        // The batch in flight may still be deleted (its intents are
        // durable); then the worker waits on the database.
        let mut gone = expired.iter().filter(|k| !w.exists(k)).count();
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = expired.iter().filter(|k| !w.exists(k)).count();
            if now == gone {
                break;
            }
            gone = now;
        }
        assert!(
            gone < expired.len(),
            "trial {trial}: the run finished before the pause"
        );
        // The lease runs out (as two minutes without renewal would).
        exec_at(
            &direct,
            "UPDATE lease SET expires_at = '2000-01-01T00:00:00.000Z'",
        )
        .await;
        let second = w
            .command(&["run"])
            .env("LETHE_DATABASE", &direct)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = finish(second, Duration::from_secs(180), "the second run");
        assert_exit(&out, 0);
        for k in &expired {
            assert!(!w.exists(k), "trial {trial}: {k} left by the second run");
        }
        proxy.resume();
        let out = finish(first, Duration::from_secs(120), "the first run, resumed");
        let said = stdout(&out) + &stderr(&out);
        refused += u64::from(said.contains("another run already completed these intents"));
        fenced += u64::from(said.contains("the run lease passed to another run"));
        assert_exit(&out, 1);
        let what = format!("trial {trial}");
        assert_safe(&w, &direct, &out, &expired, &kept, &what).await;
        let mut w = w;
        set_database(&mut w, &direct);
        assert_settles(&w, &direct, &expired, &kept, &what).await;
    }
    eprintln!(
        "database faults (lease): {trials} workers cut off past their lease and resumed after another run took over: {refused} found their outcomes already recorded by it, {fenced} refused a new intent (fencing); wrongful deletions: 0, objects recorded or certified twice: 0"
    );
}

/// A SQLite ledger on a small tmpfs that fills up once the run has started
/// deleting: the run stops (exit 1), nothing is gone without its intent,
/// and with room again the next run completes and certifies. Needs root
/// (`mount`); elsewhere it prints `SKIPPED` and the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_ledger_whose_disk_fills_mid_run_stops_deleting_and_the_next_run_certifies() {
    let mut w = World::new();
    let dir = w.path("db");
    let Some(_tmpfs) = Tmpfs::mount(&dir, "64m") else {
        return;
    };
    let url = format!("sqlite://{}?mode=rwc", dir.join("lethe.db").display());
    set_database(&mut w, &url);
    let (expired, kept) = corpus(&w);
    let mut child = spawn_run(&w);
    if first_deletion(&w, &expired, &mut child).await {
        fill(&dir);
    }
    let out = finish(child, Duration::from_secs(180), "the run on a full disk");
    let gone = assert_safe(&w, &url, &out, &expired, &kept, "disk full").await;
    std::fs::remove_file(dir.join("fill")).unwrap();
    assert_settles(&w, &url, &expired, &kept, "disk full").await;
    eprintln!(
        "database faults (SQLite, disk full): exit {}, {gone} objects deleted before the disk filled, each with its intent; wrongful deletions: 0",
        code(&out)
    );
}

/// A SQLite ledger whose folder is read-only: Linux refuses to remount a
/// file system read-only while a file on it is open for writing (EBUSY),
/// so a running lethe cannot see its ledger turn read-only; the nearest
/// case is a ledger that became read-only since the last run. The run
/// stops before deleting anything (exit 1); read-write again, the next
/// run completes and certifies. Needs root (`mount`).
#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_ledger_on_a_read_only_folder_stops_the_run_before_any_deletion() {
    let mut w = World::new();
    let dir = w.path("db");
    let Some(tmpfs) = Tmpfs::mount(&dir, "64m") else {
        return;
    };
    let url = format!("sqlite://{}?mode=rwc", dir.join("lethe.db").display());
    set_database(&mut w, &url);
    // A first run makes the ledger; then the recordings expire.
    assert_exit(&w.lethe(&["run"]), 0);
    let (expired, kept) = corpus(&w);
    tmpfs.remount("ro");
    let out = w.lethe(&["run"]);
    tmpfs.remount("rw");
    assert_exit(&out, 1);
    for k in expired.iter().chain(&kept) {
        assert!(
            w.exists(k),
            "{k} deleted by a run whose ledger is read-only"
        );
    }
    assert_safe(&w, &url, &out, &expired, &kept, "read-only").await;
    assert_settles(&w, &url, &expired, &kept, "read-only").await;
}
