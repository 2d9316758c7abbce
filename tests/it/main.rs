//! Integration tests: the real `lethe` binary against real folders and a real
//! SQLite ledger. Each test builds its own world in a temporary folder with
//! [`World`] and asserts what is gone, what remains, the exit code, and what
//! the ledger and certificates say.
// Tests make up recordings dated relative to the machine's time: the rule
// that time enters lethe once (clippy.toml) is for lethe's own code.
#![allow(clippy::disallowed_methods)]

mod claims;
mod cloud;
mod concurrency;
mod crash;
mod dbfail;
mod deploy;
mod destination;
mod erasure;
mod errors;
mod evidence;
mod execute;
mod faults;
mod fuzz;
mod holds;
mod image;
mod load;
mod local_store;
mod longlife;
mod operate;
mod plan;
mod preflight;
mod properties;
mod register;
mod requests;
mod run;
mod security;
mod tamper;
mod vectors;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, Months, Utc};

/// The sample policy shipped in `policies/`.
pub const POLICY: &str = include_str!("../../policies/retention.yaml");

/// Names that differ only in how a naive layer would encode or decode them.
/// Tests pair "a b" (kept by a sidecar) with its near twins (deleted).
pub const ODD_NAMES: &[&str] = &[
    "a b",
    "a%20b",
    "a+b",
    "ünï cødé",
    "100%",
    "x%2Fy",
    "q?x=1&y",
    "semi;colon",
    "hash#tag",
    "tab\u{00a0}nbsp",
    "emoji-📞",
    "quote'd",
    "[br]{ce}",
];

/// A temporary installation: config, policy, key, store folder, ledger.
pub struct World {
    pub dir: tempfile::TempDir,
    pub safety: String,
    /// The `[[stores]]` tables; by default one local store named `recordings`.
    pub stores: String,
    pub extra_stores: String,
    /// Where certificates go (a TOML value), and tables appended at the end.
    pub certificates: String,
    pub tail: String,
    /// Environment for the lethe process (cloud credentials in cloud tests).
    pub env: Vec<(String, String)>,
}

/// The default store: a local folder `recordings` next to the config.
pub const LOCAL_STORE: &str = "[[stores]]\nname = \"recordings\"\nurl = \"recordings\"\n";

#[allow(clippy::new_without_default)] // a World has side effects: it is made, not defaulted
impl World {
    pub fn new() -> Self {
        let world = World {
            dir: tempfile::tempdir().unwrap(),
            safety: "max_deletions = 100000\nmax_fraction = 1.0\n".into(),
            stores: LOCAL_STORE.into(),
            extra_stores: String::new(),
            certificates: "\"certificates\"".into(),
            tail: String::new(),
            env: Vec::new(),
        };
        std::fs::create_dir_all(world.store()).unwrap();
        world.write("policies/retention.yaml", POLICY);
        let out = world.lethe(&[
            "keygen",
            "--out",
            world.path("keys/lethe.key").to_str().unwrap(),
        ]);
        assert!(out.status.success(), "keygen: {}", stderr(&out));
        world.write_config();
        world
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn store(&self) -> PathBuf {
        self.path("recordings")
    }

    pub fn config(&self) -> PathBuf {
        self.path("lethe.toml")
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }

    pub fn write_config(&self) {
        let config = format!(
            "policies = \"policies\"\ndatabase = \"sqlite://lethe.db\"\ncertificates = {}\n\n[signing]\nkey = \"keys/lethe.key\"\nkey_id = \"test-key\"\n\n[safety]\n{}\n{}{}{}",
            self.certificates, self.safety, self.stores, self.extra_stores, self.tail
        );
        self.write("lethe.toml", &config);
    }

    /// Creates an object in the store (parents included).
    pub fn put(&self, key: &str, contents: &str) {
        let p = self.store().join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }

    pub fn exists(&self, key: &str) -> bool {
        self.store().join(key).symlink_metadata().is_ok()
    }

    /// Runs the binary with this world's config and a clean environment.
    pub fn lethe(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lethe"));
        cmd.arg("--config")
            .arg(self.config())
            .args(args)
            .current_dir(self.dir.path());
        for var in [
            "LETHE_CONFIG",
            "LETHE_DATABASE",
            "LETHE_DATABASE_FILE",
            "LETHE_SIGNING_KEY",
            "LETHE_LOG",
        ] {
            cmd.env_remove(var);
        }
        // Cloud settings come only from the test, never from the machine:
        // object_store would otherwise pick up stray AWS_*/AZURE_*/GOOGLE_* variables.
        for (var, _) in std::env::vars() {
            if var.starts_with("AWS_") || var.starts_with("AZURE") || var.starts_with("GOOGLE_") {
                cmd.env_remove(var);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `lethe run ARGS` as the N pods of an Indexed Job do: N processes
    /// at once, pod I with `LETHE_SHARD=I/N`; their outputs, in shard order.
    pub fn shards(&self, n: u32, args: &[&str]) -> Vec<Output> {
        let children: Vec<_> = (0..n)
            .map(|i| {
                let mut all = vec!["run"];
                all.extend_from_slice(args);
                self.command(&all)
                    .env("LETHE_SHARD", format!("{i}/{n}"))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    }

    pub fn cert(&self, n: u64) -> PathBuf {
        self.path(&format!("certificates/lethe-cert-{n:06}.json"))
    }

    pub fn manifest(&self, n: u64) -> PathBuf {
        self.path(&format!("certificates/lethe-cert-{n:06}.manifest.jsonl"))
    }

    /// The decoded payload of certificate `n`.
    pub fn payload(&self, n: u64) -> serde_json::Value {
        let env: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.cert(n)).unwrap()).unwrap();
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(env["payload"].as_str().unwrap())
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// The lines of manifest `n`.
    pub fn manifest_entries(&self, n: u64) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.manifest(n))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The `(store, key)` pairs of manifest `n`.
    pub fn manifest_keys(&self, n: u64) -> Vec<String> {
        std::fs::read_to_string(self.manifest(n))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["key"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// Every certificate's manifest keys, in certificate order, with repeats.
    pub fn all_certified(&self) -> Vec<String> {
        (1..)
            .take_while(|n| self.cert(*n).exists())
            .flat_map(|n| self.manifest_keys(n))
            .collect()
    }

    pub fn public_key(&self) -> PathBuf {
        self.path("keys/lethe.key.pub")
    }

    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("python3")
            .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); r=c.execute(sys.argv[2]).fetchall(); c.commit(); print('\\n'.join('|'.join(str(x) for x in row) for row in r))"])
            .arg(self.path("lethe.db"))
            .arg(sql)
            .output()
            .unwrap();
        assert!(out.status.success(), "sql {sql}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The process's stderr; with JSON logs (the default off a terminal) the
/// final error is a log event, whose `error` field is appended decoded, as
/// `error: ...`, so that tests read the message as an operator would.
pub fn stderr(o: &Output) -> String {
    let raw = String::from_utf8_lossy(&o.stderr).into_owned();
    let errors: Vec<String> = raw
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "command failed")
        .filter_map(|v| {
            v["fields"]["error"]
                .as_str()
                .map(|e| format!("error: {e}\n"))
        })
        .collect();
    raw + &errors.concat()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A date `months` before now, as a `YYYY/MM/DD` key segment.
pub fn months_ago(months: u32) -> String {
    date_path(Utc::now().checked_sub_months(Months::new(months)).unwrap())
}

pub fn date_path(t: DateTime<Utc>) -> String {
    t.format("%Y/%m/%d").to_string()
}

/// Asserts with the command's output on failure.
#[track_caller]
pub fn assert_exit(o: &Output, expected: i32) {
    assert_eq!(
        code(o),
        expected,
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// proptest settings for the property and fuzz suites: `PROPTEST_CASES`
/// cases (256 by default), no failure files written into the tree.
pub fn proptest_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..Default::default()
    }
}

/// The PostgreSQL server of the test machine (trust auth, database `test`).
pub fn postgres_url() -> String {
    std::env::var("LETHE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Which ledger database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl World {
    /// The ledger URL lethe uses in this world.
    pub fn database_url(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "LETHE_DATABASE")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.path("lethe.db").display()))
    }

    /// Points the world at `db`: for PostgreSQL, a fresh schema of its own.
    pub async fn use_db(&mut self, db: Db) {
        if db == Db::Postgres {
            let admin = sqlx::PgPool::connect(&postgres_url())
                .await
                .expect("the PostgreSQL server at 127.0.0.1:5432 (database test)");
            let schema = format!("lethe_it_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            self.env.push((
                "LETHE_DATABASE".into(),
                format!("{}?options=-c%20search_path%3D{schema}", postgres_url()),
            ));
        }
    }

    /// Runs SQL against this world's ledger (SQLite or PostgreSQL), for tampering.
    pub async fn exec(&self, sql: &str) {
        exec_at(&self.database_url(), sql).await
    }

    /// The first column of the first row of a query, as text (cast in SQL).
    pub async fn scalar(&self, sql: &str) -> String {
        use sqlx::Row;
        let pool = pool_at(&self.database_url()).await;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let value: String = row.try_get(0).unwrap();
        pool.close().await;
        value
    }

    /// The ledger, opened through the library (a second process would open it the same way).
    pub async fn ledger(&self) -> lethe::ledger::Ledger {
        lethe::ledger::Ledger::open(&lethe::config::DatabaseUrl::new(self.database_url()))
            .await
            .unwrap()
    }
}

/// Instantiates a test body for the SQLite and the PostgreSQL ledger.
#[macro_export]
macro_rules! for_each_db {
    ($($name:ident => $body:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread")]
                async fn sqlite() { $body($crate::Db::Sqlite).await }
                #[tokio::test(flavor = "multi_thread")]
                async fn postgres() { $body($crate::Db::Postgres).await }
            }
        )*
    };
}

/// What the library's planner (the one every command uses) decides for
/// every object of `store` at `now`, collected.
pub async fn plan_items(
    store: &lethe::store::Store,
    policy: &lethe::policy::Policy,
    orders: &lethe::decide::Orders,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<lethe::decide::Planned> {
    let mut items = Vec::new();
    lethe::plan::plan_store(
        store,
        policy,
        orders,
        now,
        lethe::plan::Scope::default(),
        &lethe::plan::Quiet,
        &mut |item| {
            items.push(item.clone());
            Ok(())
        },
    )
    .await
    .expect("the store plans");
    items
}

/// One connection to the database at `url` (SQLite or PostgreSQL).
pub async fn pool_at(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Runs `sql` on the database at `url`.
pub async fn exec_at(url: &str, sql: &str) {
    let pool = pool_at(url).await;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
}
