//! The ledger: the only module that speaks SQL.
//!
//! Every fact lethe establishes (a run started, an intent to delete, an
//! outcome, a run finished, a certificate issued) is one append-only row,
//! chained to the previous row by SHA-256 over its canonical JSON, so that
//! `ledger verify` detects any edited, inserted, removed or reordered row. The
//! SQL is portable between SQLite (the default) and PostgreSQL through sqlx's
//! `Any` driver, and migrations are applied automatically when the ledger
//! opens. Alongside the chain, a `pending_intent` table indexes intents that
//! have no outcome yet; it is derived state that makes crash recovery cheap
//! and is not itself evidence.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::certificate::jcs;
use crate::config::DatabaseUrl;
use crate::execute::{Intent, IntentGroup, Journal, JournalError, Outcome, Pending, Recorded};
use crate::hold::{self, Hold};

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open the ledger database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot prepare the ledger database {url}: {message}")]
    Prepare { url: String, message: String },
    #[error("ledger schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("ledger database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("ledger row {seq} cannot be read: {message}")]
    Corrupt { seq: i64, message: String },
    #[error("case {0} already has a hold (placed or released); a case id cannot be reused")]
    CaseExists(String),
    #[error("there is no hold for case {0}")]
    NoSuchHold(String),
    #[error("the hold for case {0} was already released")]
    AlreadyReleased(String),
    #[error(
        "erasure request {0} was already used for another subject; a request id names one subject"
    )]
    RequestReused(String),
    #[error(
        "a release of case {case} was already requested by {by}; approve it with `lethe hold approve-release`"
    )]
    ReleasePending { case: String, by: String },
    #[error("no release of case {0} was requested; request it with `lethe hold release`")]
    NoReleaseRequested(String),
    #[error(
        "{by} already requested or approved the release of case {case}; another person must approve it"
    )]
    SamePerson { case: String, by: String },
}

/// The hash a chain starts from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Row kinds.
pub mod kind {
    pub const RUN_STARTED: &str = "run-started";
    pub const INTENT: &str = "intent";
    pub const OUTCOME: &str = "outcome";
    pub const RUN_FINISHED: &str = "run-finished";
    pub const CERTIFICATE: &str = "certificate";
    pub const HOLD_PLACED: &str = "hold-placed";
    pub const HOLD_RELEASED: &str = "hold-released";
    pub const HOLD_RELEASE_REQUESTED: &str = "hold-release-requested";
    pub const HOLD_RELEASE_APPROVED: &str = "hold-release-approved";
    pub const ERASURE_REQUESTED: &str = "erasure-requested";
    /// A shard's plan counts, for the limits of its whole pass.
    pub const SHARD_PLANNED: &str = "shard-planned";
}

/// What one shard of a pass plans to delete, store by store: the shards of
/// a pass add these up and check the safety limits on the sum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    pub pass: String,
    pub shard: u32,
    pub of: u32,
    /// Store name -> (deletions, recordings) planned by this shard.
    pub stores: BTreeMap<String, (u64, u64)>,
}

mod lease;

pub use lease::{Holder, Lease, LeaseError, RETENTION_LEASE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the ledger database; clones share the connection pool.
#[derive(Clone)]
pub struct Ledger {
    pool: AnyPool,
    backend: Backend,
}

/// A row to append.
#[derive(Debug, Clone)]
pub struct NewRow {
    pub kind: &'static str,
    pub run_id: String,
    pub store: Option<String>,
    pub key: Option<String>,
    pub ref_seq: Option<i64>,
    pub body: Value,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub seq: i64,
    pub kind: String,
    pub run_id: String,
    pub at: String,
    pub store: Option<String>,
    pub key: Option<String>,
    pub ref_seq: Option<i64>,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

impl LedgerRow {
    fn from_any(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            seq: row.try_get("seq")?,
            kind: row.try_get("kind")?,
            run_id: row.try_get("run_id")?,
            at: row.try_get("at")?,
            store: row.try_get("store")?,
            key: row.try_get("object_key")?,
            ref_seq: row.try_get("ref_seq")?,
            body: row.try_get("body")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        })
    }

    /// The chain hash of this row: SHA-256 of the canonical JSON of all its
    /// fields (the body parsed, so that its hash does not depend on spacing)
    /// and its predecessor's hash. `None` if the body is not JSON.
    pub fn compute_hash(&self) -> Option<String> {
        let body: Value = serde_json::from_str(&self.body).ok()?;
        // Bodies are written in canonical form: any other spelling of the
        // same JSON (spaces, escapes, member order) is an edit too.
        if jcs::value_to_vec(&body) != self.body.as_bytes() {
            return None;
        }
        let doc = json!({
            "seq": self.seq, "kind": self.kind, "run_id": self.run_id, "at": self.at,
            "store": self.store, "key": self.key, "ref": self.ref_seq, "body": body,
            "prev": self.prev_hash,
        });
        Some(hex::encode(Sha256::digest(jcs::value_to_vec(&doc))))
    }

    /// [`compute_hash`](Self::compute_hash) for a row whose body is already
    /// canonical JSON (a row being appended): the same bytes, written
    /// directly instead of parsed and re-serialized.
    fn hash_of_canonical(&self) -> String {
        fn string(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
            jcs::write_string(name, out);
            out.push(b':');
            match value {
                Some(v) => jcs::write_string(v, out),
                None => out.extend_from_slice(b"null"),
            }
            out.push(b',');
        }
        let mut out = Vec::with_capacity(self.body.len() + 256);
        out.push(b'{');
        // Members in RFC 8785 order: at, body, key, kind, prev, ref, run_id, seq, store.
        string(&mut out, "at", Some(&self.at));
        out.extend_from_slice(b"\"body\":");
        out.extend_from_slice(self.body.as_bytes());
        out.push(b',');
        string(&mut out, "key", self.key.as_deref());
        string(&mut out, "kind", Some(&self.kind));
        string(&mut out, "prev", Some(&self.prev_hash));
        out.extend_from_slice(b"\"ref\":");
        match self.ref_seq {
            Some(r) => out.extend_from_slice(r.to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b',');
        string(&mut out, "run_id", Some(&self.run_id));
        out.extend_from_slice(format!("\"seq\":{},", self.seq).as_bytes());
        jcs::write_string("store", &mut out);
        out.push(b':');
        match &self.store {
            Some(v) => jcs::write_string(v, &mut out),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        hex::encode(Sha256::digest(&out))
    }

    pub fn body_json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).map_err(|e| LedgerError::Corrupt {
            seq: self.seq,
            message: format!("body is not JSON: {e}"),
        })
    }
}

/// Where a SQLite ledger file lives, for messages and existence checks.
pub fn sqlite_path(url: &DatabaseUrl) -> Option<PathBuf> {
    let rest = url.expose().strip_prefix("sqlite://")?;
    Some(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

impl Ledger {
    /// Connects, applies the migrations and returns the ledger.
    pub async fn open(url: &DatabaseUrl) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.is_sqlite() {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if let Some(dir) = sqlite_path(url)
            .as_deref()
            .and_then(std::path::Path::parent)
        {
            std::fs::create_dir_all(dir).map_err(|e| LedgerError::Prepare {
                url: url.redacted(),
                message: e.to_string(),
            })?;
        }
        let mut options =
            AnyPoolOptions::new().max_connections(if backend == Backend::Sqlite { 1 } else { 4 });
        if backend == Backend::Sqlite {
            // WAL with full synchronous writes: a committed intent survives a
            // power cut; the busy timeout makes a second writer wait, not fail.
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA busy_timeout = 30000",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        // One direct connection first: an unreachable or refusing database
        // fails at once with its own error, instead of after the pool's
        // acquire timeout.
        {
            use sqlx::Connection;
            let probe = sqlx::AnyConnection::connect(url.expose())
                .await
                .map_err(|source| LedgerError::Open {
                    url: url.redacted(),
                    source,
                })?;
            probe.close().await.ok();
        }
        let pool = options
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect(url.expose())
            .await
            .map_err(|source| LedgerError::Open {
                url: url.redacted(),
                source,
            })?;
        // Two first runs may migrate a fresh SQLite file at once (SQLite has
        // no migration lock): the loser finds a table already created and
        // tries again, when the winner's migrations are on record.
        let migrator = sqlx::migrate!("./migrations");
        let mut attempt = 0;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(e) if attempt < 10 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "ledger migration collided; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(
                        100 + fastrand::u64(0..200),
                    ))
                    .await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Self { pool, backend })
    }

    pub async fn close(self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                // One appender at a time keeps the chain linear; readers are not blocked.
                sqlx::query("LOCK TABLE ledger IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        })
    }

    /// Appends rows in one transaction and returns their sequence numbers.
    pub async fn append(&self, rows: Vec<NewRow>) -> Result<Vec<i64>> {
        let mut tx = self.begin().await?;
        let seqs = Self::append_in(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(seqs)
    }

    /// Appends inside an open transaction: the hash chain is computed row by
    /// row, and the rows are written many to a statement (a statement per row
    /// would cost a round trip to the database worker each).
    async fn append_in(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        rows: Vec<NewRow>,
    ) -> Result<Vec<i64>> {
        let head = sqlx::query("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
        let (mut seq, mut prev): (i64, String) = match head {
            Some(r) => (r.try_get("seq")?, r.try_get("hash")?),
            None => (0, GENESIS.to_string()),
        };
        let mut seqs = Vec::with_capacity(rows.len());
        let mut stored_rows = Vec::with_capacity(rows.len());
        for row in rows {
            seq += 1;
            let body = String::from_utf8(jcs::value_to_vec(&row.body)).map_err(|e| {
                LedgerError::Corrupt {
                    seq,
                    message: e.to_string(),
                }
            })?;
            let mut stored = LedgerRow {
                seq,
                kind: row.kind.to_string(),
                run_id: row.run_id,
                at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                store: row.store,
                key: row.key,
                ref_seq: row.ref_seq,
                body,
                prev_hash: prev,
                hash: String::new(),
            };
            stored.hash = stored.hash_of_canonical();
            debug_assert_eq!(Some(&stored.hash), stored.compute_hash().as_ref());
            seqs.push(seq);
            prev = stored.hash.clone();
            stored_rows.push(stored);
        }
        let style = Placeholders::of(tx);
        let mut rest = stored_rows.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<LedgerRow> = rest.by_ref().take(ROWS_PER_STATEMENT).collect();
            let sql = values_statement(
                "INSERT INTO ledger (seq, kind, run_id, at, store, object_key, ref_seq, body, prev_hash, hash) VALUES ",
                chunk.len(),
                10,
                style,
            );
            let full = chunk.len() == ROWS_PER_STATEMENT;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(full);
            for r in chunk {
                q = q
                    .bind(r.seq)
                    .bind(r.kind)
                    .bind(r.run_id)
                    .bind(r.at)
                    .bind(r.store)
                    .bind(r.key)
                    .bind(r.ref_seq)
                    .bind(r.body)
                    .bind(r.prev_hash)
                    .bind(r.hash);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(seqs)
    }

    /// The last row's sequence number and hash (`0` and the genesis hash when empty).
    pub async fn head(&self) -> Result<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => (r.try_get("seq")?, r.try_get("hash")?),
            None => (0, GENESIS.to_string()),
        })
    }

    pub async fn row(&self, seq: i64) -> Result<Option<LedgerRow>> {
        let sql = "SELECT seq, kind, run_id, at, store, object_key, ref_seq, body, prev_hash, hash FROM ledger WHERE seq = $1";
        let row = sqlx::query(sql)
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(LedgerRow::from_any).transpose()
    }

    /// Every row in order, streamed.
    pub fn rows(&self) -> BoxStream<'_, Result<LedgerRow>> {
        sqlx::query("SELECT seq, kind, run_id, at, store, object_key, ref_seq, body, prev_hash, hash FROM ledger ORDER BY seq")
            .fetch(&self.pool)
            .map(|r| r.map_err(LedgerError::from).and_then(|row| LedgerRow::from_any(&row)))
            .boxed()
    }

    /// Rows of one kind with `from <= seq <= to`, streamed in order.
    pub fn rows_of_kind(
        &self,
        kind: &'static str,
        from: i64,
        to: i64,
    ) -> BoxStream<'_, Result<LedgerRow>> {
        sqlx::query(
            "SELECT seq, kind, run_id, at, store, object_key, ref_seq, body, prev_hash, hash FROM ledger \
             WHERE kind = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq",
        )
        .bind(kind)
        .bind(from)
        .bind(to)
        .fetch(&self.pool)
        .map(|r| r.map_err(LedgerError::from).and_then(|row| LedgerRow::from_any(&row)))
        .boxed()
    }

    /// The `run-started` and `run-finished` rows of one run, wherever they are.
    pub async fn run_rows(&self, run_id: &str) -> Result<(Option<LedgerRow>, Option<LedgerRow>)> {
        let rows = sqlx::query(
            "SELECT seq, kind, run_id, at, store, object_key, ref_seq, body, prev_hash, hash FROM ledger \
             WHERE run_id = $1 AND kind IN ('run-started', 'run-finished') ORDER BY seq",
        )
        .bind(run_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut started = None;
        let mut finished = None;
        for row in &rows {
            let row = LedgerRow::from_any(row)?;
            if row.kind == kind::RUN_STARTED {
                started = Some(row)
            } else {
                finished = Some(row)
            }
        }
        Ok((started, finished))
    }

    /// When the last retention run that completed without failures ended
    /// (its `run-finished` row's `finished_at`), for the whole store set
    /// (`shard` none) or one shard; `None` if there was none. Erasures are
    /// not retention passes and do not count. Read newest first, so only the
    /// runs since the last success are looked at.
    pub async fn last_success(&self, shard: Option<&str>) -> Result<Option<DateTime<Utc>>> {
        // One query (the SQLite pool has a single connection): each finished
        // run with the row that started it.
        let mut finished = sqlx::query(
            "SELECT f.at AS at, f.body AS finished, s.body AS started FROM ledger f \
             JOIN ledger s ON s.run_id = f.run_id AND s.kind = 'run-started' \
             WHERE f.kind = 'run-finished' ORDER BY f.seq DESC",
        )
        .fetch(&self.pool);
        while let Some(row) = finished.next().await {
            let row = row?;
            let body: Value =
                serde_json::from_str(&row.try_get::<String, _>("finished")?).unwrap_or_default();
            let started: Value =
                serde_json::from_str(&row.try_get::<String, _>("started")?).unwrap_or_default();
            if body["status"] != "completed"
                || started["purpose"] != "retention"
                || started["shard"].as_str() != shard
            {
                continue;
            }
            let at: String = row.try_get("at")?;
            let at = body["finished_at"].as_str().unwrap_or(&at);
            if let Ok(t) = DateTime::parse_from_rfc3339(at) {
                return Ok(Some(t.with_timezone(&Utc)));
            }
        }
        Ok(None)
    }

    /// Appends a certificate row if the last certificate is still the one
    /// (by ledger seq) the certificate was computed against; `Ok(None)` if
    /// another certificate was issued meanwhile (a concurrent shard), so the
    /// caller computes it again.
    pub async fn append_certificate(
        &self,
        row: NewRow,
        previous: Option<i64>,
    ) -> Result<Option<i64>> {
        let mut tx = self.begin().await?;
        let last = sqlx::query(
            "SELECT seq FROM ledger WHERE kind = 'certificate' ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let last: Option<i64> = match last {
            Some(r) => Some(r.try_get("seq")?),
            None => None,
        };
        if last != previous {
            tx.rollback().await?;
            return Ok(None);
        }
        let seq = Self::append_in(&mut tx, vec![row]).await?[0];
        tx.commit().await?;
        Ok(Some(seq))
    }

    /// The most recent certificate row.
    pub async fn last_certificate(&self) -> Result<Option<LedgerRow>> {
        let sql = "SELECT seq, kind, run_id, at, store, object_key, ref_seq, body, prev_hash, hash FROM ledger \
                   WHERE kind = 'certificate' ORDER BY seq DESC LIMIT 1";
        let row = sqlx::query(sql).fetch_optional(&self.pool).await?;
        row.as_ref().map(LedgerRow::from_any).transpose()
    }

    /// Intents that have no outcome yet.
    pub async fn pending(&self) -> Result<Vec<Pending>> {
        let rows = sqlx::query(
            "SELECT l.seq, l.kind, l.run_id, l.at, l.store, l.object_key, l.ref_seq, l.body, l.prev_hash, l.hash \
             FROM pending_intent p JOIN ledger l ON l.seq = p.seq ORDER BY l.seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let row = LedgerRow::from_any(r)?;
                let intent: Intent =
                    serde_json::from_str(&row.body).map_err(|e| LedgerError::Corrupt {
                        seq: row.seq,
                        message: e.to_string(),
                    })?;
                Ok(Pending {
                    seq: row.seq,
                    run_id: row.run_id,
                    intent,
                })
            })
            .collect()
    }

    /// Outcomes recorded with `from <= seq <= to`, streamed in order.
    pub fn outcomes(&self, from: i64, to: i64) -> BoxStream<'_, Result<(LedgerRow, OutcomeBody)>> {
        self.rows_of_kind(kind::OUTCOME, from, to)
            .and_then(|row| async move {
                let body: OutcomeBody =
                    serde_json::from_str(&row.body).map_err(|e| LedgerError::Corrupt {
                        seq: row.seq,
                        message: e.to_string(),
                    })?;
                Ok((row, body))
            })
            .boxed()
    }

    /// A journal that records intents and outcomes for `run_id`.
    pub fn journal(&self, run_id: &str) -> RunJournal<'_> {
        RunJournal {
            ledger: self,
            run_id: run_id.to_string(),
            lease: None,
        }
    }

    /// A journal whose every intent transaction first checks that `lease` is
    /// still ours (fencing).
    pub fn fenced_journal(&self, run_id: &str, lease: Lease) -> RunJournal<'_> {
        RunJournal {
            ledger: self,
            run_id: run_id.to_string(),
            lease: Some(lease),
        }
    }

    /// Checks the whole chain: contiguous sequence numbers from 1, each row's
    /// predecessor hash and its own hash.
    pub async fn verify(&self) -> Result<ChainReport> {
        let mut rows = self.rows();
        let mut expected_seq = 1i64;
        let mut prev = GENESIS.to_string();
        let mut open: std::collections::BTreeSet<i64> = Default::default();
        let mut report = ChainReport {
            rows: 0,
            head: GENESIS.to_string(),
            problems: Vec::new(),
        };
        while let Some(row) = rows.next().await {
            let row = row?;
            if row.seq != expected_seq {
                report.problems.push(format!("row {}: expected sequence number {expected_seq} (a row was removed or inserted)", row.seq));
            }
            if row.prev_hash != prev {
                report.problems.push(format!("row {}: does not link to the row before it (a row was removed, inserted or reordered)", row.seq));
            }
            if row.compute_hash().as_deref() != Some(row.hash.as_str()) {
                report.problems.push(format!(
                    "row {}: content does not match its hash (the row was edited)",
                    row.seq
                ));
            }
            // The intents the chain leaves open, to check the pending index against.
            match row.kind.as_str() {
                kind::INTENT => {
                    open.insert(row.seq);
                }
                kind::OUTCOME => match serde_json::from_str::<OutcomeBody>(&row.body) {
                    Ok(o) if !crate::execute::stays_pending(&o.intent, &o.outcome) => {
                        open.remove(&o.outcome.intent);
                    }
                    Ok(_) => {}
                    Err(e) => report
                        .problems
                        .push(format!("row {}: not an outcome: {e}", row.seq)),
                },
                _ => {}
            }
            expected_seq = row.seq + 1;
            prev = row.hash.clone();
            report.rows += 1;
            report.head = row.hash;
            if report.problems.len() >= 100 {
                report.problems.push("more problems not listed".into());
                break;
            }
        }
        drop(rows);
        // The pending index is what the next run's recovery completes: an
        // intent removed from it would leave its object gone and uncertified.
        if report.problems.len() < 100 {
            let index: std::collections::BTreeSet<i64> =
                sqlx::query("SELECT seq FROM pending_intent")
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<i64, _>("seq"))
                    .collect::<Result<_, _>>()?;
            for seq in open.difference(&index).take(20) {
                report.problems.push(format!(
                    "row {seq}: an intent without a final outcome is missing from the pending-intent index (the next run would never complete it)"
                ));
            }
            for seq in index.difference(&open).take(20) {
                report.problems.push(format!(
                    "the pending-intent index lists {seq}, which the chain does not show as an open intent"
                ));
            }
        }
        Ok(report)
    }
}

/// A hold as the ledger knows it: placed, and perhaps released.
#[derive(Debug, Clone, Serialize)]
pub struct HoldRecord {
    pub hold: Hold,
    pub placed_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released: Option<Release>,
    /// A release asked for and awaiting approval by other people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_requested: Option<ReleaseRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub case: String,
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    /// The other people who approved the release (when more than one must agree).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
}

/// Where a release stands after a request or an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseState {
    /// Released (ledger row).
    Released(i64),
    /// Waiting for this many more approvals from other people.
    Awaiting { requested_by: String, more: usize },
}

/// A release asked for but not yet approved by enough people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    pub approved_by: Vec<String>,
}

impl Ledger {
    async fn active_holds_in(tx: &mut sqlx::Transaction<'static, sqlx::Any>) -> Result<Vec<Hold>> {
        let rows = sqlx::query(
            "SELECT placed_seq, body FROM hold WHERE released_seq IS NULL ORDER BY placed_seq",
        )
        .fetch_all(&mut **tx)
        .await?;
        rows.iter().map(Self::hold_from_row).collect()
    }

    fn hold_from_row(row: &AnyRow) -> Result<Hold> {
        let seq: i64 = row.try_get("placed_seq")?;
        let body: String = row.try_get("body")?;
        serde_json::from_str(&body).map_err(|e| LedgerError::Corrupt {
            seq,
            message: format!("hold: {e}"),
        })
    }

    /// The holds in force.
    pub async fn active_holds(&self) -> Result<Vec<Hold>> {
        let rows = sqlx::query(
            "SELECT placed_seq, body FROM hold WHERE released_seq IS NULL ORDER BY placed_seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::hold_from_row).collect()
    }

    /// Every hold, with its release if it was released.
    pub async fn holds(&self) -> Result<Vec<HoldRecord>> {
        let mut requests = self.pending_releases().await?;
        let rows =
            sqlx::query("SELECT placed_seq, released_seq, body FROM hold ORDER BY placed_seq")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let hold = Self::hold_from_row(row)?;
            let hold_case = hold.case.clone();
            let placed_seq: i64 = row.try_get("placed_seq")?;
            let released_seq: Option<i64> = row.try_get("released_seq")?;
            let released = match released_seq {
                Some(seq) => {
                    let row = self.row(seq).await?.ok_or(LedgerError::Corrupt {
                        seq,
                        message: "missing release row".into(),
                    })?;
                    Some(
                        serde_json::from_str(&row.body).map_err(|e| LedgerError::Corrupt {
                            seq,
                            message: e.to_string(),
                        })?,
                    )
                }
                None => None,
            };
            out.push(HoldRecord {
                hold,
                placed_seq,
                released,
                release_requested: requests.remove(&hold_case),
            });
        }
        Ok(out)
    }

    /// Places a hold: a ledger row and the index entry, in one transaction.
    pub async fn place_hold(&self, hold: &Hold) -> Result<i64> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT placed_seq FROM hold WHERE case_id = $1")
            .bind(hold.case.clone())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(LedgerError::CaseExists(hold.case.clone()));
        }
        let body = serde_json::to_value(hold).map_err(|e| LedgerError::Corrupt {
            seq: 0,
            message: e.to_string(),
        })?;
        let row = NewRow {
            kind: kind::HOLD_PLACED,
            run_id: format!("hold {}", hold.case),
            store: hold.store.clone(),
            key: None,
            ref_seq: None,
            body: body.clone(),
        };
        let seq = Self::append_in(&mut tx, vec![row]).await?[0];
        sqlx::query("INSERT INTO hold (case_id, placed_seq, body) VALUES ($1, $2, $3)")
            .bind(hold.case.clone())
            .bind(seq)
            .bind(String::from_utf8_lossy(&jcs::value_to_vec(&body)).into_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Releases a hold; it cannot be placed again under the same case id.
    /// Asks for a release. With `people` = 1 it takes effect at once;
    /// otherwise it waits for `people - 1` approvals by other people.
    pub async fn request_release(&self, release: &Release, people: usize) -> Result<ReleaseState> {
        if people <= 1 {
            return self.release_hold(release).await.map(ReleaseState::Released);
        }
        let mut tx = self.begin().await?;
        let placed_seq = Self::active_hold_in(&mut tx, &release.case).await?;
        if let Some(pending) = Self::pending_release_in(&mut tx, placed_seq).await? {
            return Err(LedgerError::ReleasePending {
                case: release.case.clone(),
                by: pending.by,
            });
        }
        let body = serde_json::to_value(ReleaseRequest {
            by: release.by.clone(),
            reason: release.reason.clone(),
            at: release.at,
            approved_by: vec![],
        })
        .map_err(|e| LedgerError::Corrupt {
            seq: 0,
            message: e.to_string(),
        })?;
        let row = NewRow {
            kind: kind::HOLD_RELEASE_REQUESTED,
            run_id: format!("hold {}", release.case),
            store: None,
            key: None,
            ref_seq: Some(placed_seq),
            body,
        };
        Self::append_in(&mut tx, vec![row]).await?;
        tx.commit().await?;
        Ok(ReleaseState::Awaiting {
            requested_by: release.by.clone(),
            more: people - 1,
        })
    }

    /// Approves a requested release; the approver must be someone who has not
    /// requested or approved it yet. The release takes effect with the last
    /// approval needed.
    pub async fn approve_release(
        &self,
        case: &str,
        by: &str,
        at: DateTime<Utc>,
        people: usize,
    ) -> Result<ReleaseState> {
        let mut tx = self.begin().await?;
        let placed_seq = Self::active_hold_in(&mut tx, case).await?;
        let Some(pending) = Self::pending_release_in(&mut tx, placed_seq).await? else {
            return Err(LedgerError::NoReleaseRequested(case.to_string()));
        };
        let same = |other: &String| crate::hold::same_person(other, by);
        if same(&pending.by) || pending.approved_by.iter().any(same) {
            return Err(LedgerError::SamePerson {
                case: case.to_string(),
                by: by.to_string(),
            });
        }
        let body = json!({"case": case, "by": by, "at": timestamp(at)});
        let row = NewRow {
            kind: kind::HOLD_RELEASE_APPROVED,
            run_id: format!("hold {case}"),
            store: None,
            key: None,
            ref_seq: Some(placed_seq),
            body,
        };
        Self::append_in(&mut tx, vec![row]).await?;
        let mut approved_by = pending.approved_by.clone();
        approved_by.push(by.to_string());
        let state = if approved_by.len() + 1 >= people {
            let release = Release {
                case: case.to_string(),
                by: pending.by.clone(),
                reason: pending.reason.clone(),
                at,
                approved_by,
            };
            ReleaseState::Released(Self::release_in(&mut tx, &release, placed_seq).await?)
        } else {
            ReleaseState::Awaiting {
                requested_by: pending.by.clone(),
                more: people - 1 - approved_by.len(),
            }
        };
        tx.commit().await?;
        Ok(state)
    }

    /// The placed_seq of the active hold for `case`.
    async fn active_hold_in(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        case: &str,
    ) -> Result<i64> {
        let row = sqlx::query("SELECT placed_seq, released_seq FROM hold WHERE case_id = $1")
            .bind(case.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        let Some(row) = row else {
            return Err(LedgerError::NoSuchHold(case.to_string()));
        };
        if row.try_get::<Option<i64>, _>("released_seq")?.is_some() {
            return Err(LedgerError::AlreadyReleased(case.to_string()));
        }
        Ok(row.try_get("placed_seq")?)
    }

    /// The release request of an active hold, with its approvals so far.
    async fn pending_release_in(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        placed_seq: i64,
    ) -> Result<Option<ReleaseRequest>> {
        let rows = sqlx::query("SELECT seq, kind, body FROM ledger WHERE ref_seq = $1 AND kind IN ('hold-release-requested', 'hold-release-approved') ORDER BY seq")
            .bind(placed_seq)
            .fetch_all(&mut **tx)
            .await?;
        let mut pending: Option<ReleaseRequest> = None;
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let body: String = row.try_get("body")?;
            let corrupt = |e: serde_json::Error| LedgerError::Corrupt {
                seq,
                message: e.to_string(),
            };
            match row.try_get::<String, _>("kind")?.as_str() {
                kind::HOLD_RELEASE_REQUESTED => {
                    pending = Some(serde_json::from_str(&body).map_err(corrupt)?)
                }
                _ => {
                    let v: Value = serde_json::from_str(&body).map_err(corrupt)?;
                    if let Some(p) = pending.as_mut() {
                        p.approved_by
                            .push(v["by"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
        }
        Ok(pending)
    }

    /// Where each active hold's release stands, if one was requested.
    pub async fn pending_releases(&self) -> Result<HashMap<String, ReleaseRequest>> {
        let mut out = HashMap::new();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT case_id, placed_seq FROM hold WHERE released_seq IS NULL")
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            if let Some(p) = Self::pending_release_in(&mut tx, row.try_get("placed_seq")?).await? {
                out.insert(row.try_get("case_id")?, p);
            }
        }
        tx.rollback().await?;
        Ok(out)
    }

    async fn release_in(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        release: &Release,
        placed_seq: i64,
    ) -> Result<i64> {
        let body = serde_json::to_value(release).map_err(|e| LedgerError::Corrupt {
            seq: 0,
            message: e.to_string(),
        })?;
        let new = NewRow {
            kind: kind::HOLD_RELEASED,
            run_id: format!("hold {}", release.case),
            store: None,
            key: None,
            ref_seq: Some(placed_seq),
            body,
        };
        let seq = Self::append_in(tx, vec![new]).await?[0];
        sqlx::query("UPDATE hold SET released_seq = $1 WHERE case_id = $2")
            .bind(seq)
            .bind(release.case.clone())
            .execute(&mut **tx)
            .await?;
        Ok(seq)
    }

    pub async fn release_hold(&self, release: &Release) -> Result<i64> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT placed_seq, released_seq FROM hold WHERE case_id = $1")
            .bind(release.case.clone())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(LedgerError::NoSuchHold(release.case.clone()));
        };
        let placed_seq: i64 = row.try_get("placed_seq")?;
        let released_seq: Option<i64> = row.try_get("released_seq")?;
        if released_seq.is_some() {
            return Err(LedgerError::AlreadyReleased(release.case.clone()));
        }
        let body = serde_json::to_value(release).map_err(|e| LedgerError::Corrupt {
            seq: 0,
            message: e.to_string(),
        })?;
        let new = NewRow {
            kind: kind::HOLD_RELEASED,
            run_id: format!("hold {}", release.case),
            store: None,
            key: None,
            ref_seq: Some(placed_seq),
            body,
        };
        let seq = Self::append_in(&mut tx, vec![new]).await?[0];
        sqlx::query("UPDATE hold SET released_seq = $1 WHERE case_id = $2")
            .bind(seq)
            .bind(release.case.clone())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Records an erasure request in the ledger and its index (once per
    /// request; repeating a request for the same subject is allowed, for
    /// another subject refused).
    pub async fn record_erasure(
        &self,
        run_id: &str,
        request: &str,
        subject_sha256: &str,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        let mut tx = self.begin().await?;
        let existing = sqlx::query("SELECT subject_sha256 FROM erasure WHERE request = $1")
            .bind(request.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = &existing
            && row.try_get::<String, _>("subject_sha256")? != subject_sha256
        {
            return Err(LedgerError::RequestReused(request.to_string()));
        }
        let body =
            json!({"request": request, "subject_sha256": subject_sha256, "at": timestamp(at)});
        let row = NewRow {
            kind: kind::ERASURE_REQUESTED,
            run_id: run_id.to_string(),
            store: None,
            key: None,
            ref_seq: None,
            body,
        };
        let seq = Self::append_in(&mut tx, vec![row]).await?[0];
        if existing.is_none() {
            sqlx::query("INSERT INTO erasure (request, subject_sha256, seq) VALUES ($1, $2, $3)")
                .bind(request.to_string())
                .bind(subject_sha256.to_string())
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(seq)
    }

    /// Erased subjects: SHA-256 of the subject id → the (first) request.
    pub async fn erasures(&self) -> Result<HashMap<String, String>> {
        let rows = sqlx::query("SELECT request, subject_sha256 FROM erasure ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        let mut out = HashMap::new();
        for row in &rows {
            out.entry(row.try_get::<String, _>("subject_sha256")?)
                .or_insert(row.try_get::<String, _>("request")?);
        }
        Ok(out)
    }

    /// Records a shard's plan counts (see [`ShardPlan`]).
    pub async fn record_shard_plan(&self, run_id: &str, plan: &ShardPlan) -> Result<i64> {
        let body = serde_json::to_value(plan).map_err(|e| LedgerError::Corrupt {
            seq: 0,
            message: e.to_string(),
        })?;
        Ok(self
            .append(vec![NewRow {
                kind: kind::SHARD_PLANNED,
                run_id: run_id.to_string(),
                store: None,
                key: None,
                ref_seq: None,
                body,
            }])
            .await?[0])
    }

    /// The plans recorded so far by the shards of `pass`, one per shard (the
    /// latest, if a shard planned twice).
    pub async fn shard_plans(&self, pass: &str) -> Result<BTreeMap<u32, ShardPlan>> {
        let mut out = BTreeMap::new();
        let mut rows = self.rows_of_kind(kind::SHARD_PLANNED, 1, i64::MAX);
        while let Some(row) = rows.next().await {
            let row = row?;
            let plan: ShardPlan =
                serde_json::from_str(&row.body).map_err(|e| LedgerError::Corrupt {
                    seq: row.seq,
                    message: format!("shard plan: {e}"),
                })?;
            if plan.pass == pass {
                out.insert(plan.shard, plan);
            }
        }
        Ok(out)
    }

    /// Whether deletions are on record that no certificate covers yet
    /// (an interrupted run): intents without outcomes, or outcomes after the
    /// last certificate's range.
    pub async fn has_uncertified(&self) -> Result<bool> {
        if !self.pending().await?.is_empty() {
            return Ok(true);
        }
        let covered = match self.last_certificate().await? {
            Some(row) => row.body_json()?["payload"]["ledger"]["last_seq"]
                .as_i64()
                .unwrap_or(0),
            None => 0,
        };
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM ledger WHERE kind = 'outcome' AND seq > $1")
                .bind(covered)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Checks the hold index against the chain's hold rows: a hold removed
    /// from the index (to let a run delete) shows here.
    pub async fn verify_holds(&self) -> Result<Vec<String>> {
        let mut expected: BTreeMap<String, (i64, Option<i64>, String)> = BTreeMap::new();
        let mut problems = Vec::new();
        // Only the hold rows are read (the kind index finds them), so that a
        // run can afford this check before it deletes anything.
        let mut rows = Vec::new();
        for k in [kind::HOLD_PLACED, kind::HOLD_RELEASED] {
            let mut stream = self.rows_of_kind(k, 1, i64::MAX);
            while let Some(row) = stream.next().await {
                rows.push(row?);
            }
        }
        rows.sort_by_key(|r| r.seq);
        for row in rows {
            problems.extend(self.anchored(&row).await?);
            match row.kind.as_str() {
                kind::HOLD_PLACED => {
                    let hold: Hold =
                        serde_json::from_str(&row.body).map_err(|e| LedgerError::Corrupt {
                            seq: row.seq,
                            message: e.to_string(),
                        })?;
                    expected.insert(hold.case, (row.seq, None, row.body.clone()));
                }
                kind::HOLD_RELEASED => {
                    let release: Release =
                        serde_json::from_str(&row.body).map_err(|e| LedgerError::Corrupt {
                            seq: row.seq,
                            message: e.to_string(),
                        })?;
                    match expected.get_mut(&release.case) {
                        Some(entry) => entry.1 = Some(row.seq),
                        None => problems.push(format!(
                            "row {}: releases case {}, which was never placed",
                            row.seq, release.case
                        )),
                    }
                }
                _ => {}
            }
        }
        let index = sqlx::query("SELECT case_id, placed_seq, released_seq, body FROM hold")
            .fetch_all(&self.pool)
            .await?;
        let mut actual: BTreeMap<String, (i64, Option<i64>, String)> = BTreeMap::new();
        for row in &index {
            actual.insert(
                row.try_get("case_id")?,
                (
                    row.try_get("placed_seq")?,
                    row.try_get("released_seq")?,
                    row.try_get("body")?,
                ),
            );
        }
        for (case, want) in &expected {
            match actual.get(case) {
                None => problems.push(format!(
                    "hold {case} (ledger row {}) is missing from the hold index",
                    want.0
                )),
                Some(got) if got != want => problems.push(format!(
                    "hold {case} in the hold index differs from ledger row {}",
                    want.0
                )),
                Some(_) => {}
            }
        }
        for case in actual.keys().filter(|c| !expected.contains_key(*c)) {
            problems.push(format!(
                "hold {case} is in the hold index but not in the ledger"
            ));
        }
        problems.extend(self.verify_erasures().await?);
        Ok(problems)
    }
}

impl Ledger {
    /// Whether a row of the chain is still the one that was written: its
    /// content matches its hash, and the row after it (if any) links to that
    /// hash, so that an edit of the row and its hash together shows too.
    async fn anchored(&self, row: &LedgerRow) -> Result<Option<String>> {
        if row.compute_hash().as_deref() != Some(row.hash.as_str()) {
            return Ok(Some(format!(
                "row {}: content does not match its hash (the row was edited)",
                row.seq
            )));
        }
        Ok(match self.row(row.seq + 1).await? {
            Some(next) if next.prev_hash != row.hash => Some(format!(
                "row {}: the row after it does not link to it (the row was rewritten)",
                row.seq
            )),
            _ => None,
        })
    }

    /// Checks the erasure index against the chain: an erased subject removed
    /// from the index (so that its recordings could come back) shows here.
    async fn verify_erasures(&self) -> Result<Vec<String>> {
        let mut expected: BTreeMap<String, (String, i64)> = BTreeMap::new();
        let mut found = Vec::new();
        let mut rows = self.rows_of_kind(kind::ERASURE_REQUESTED, 1, i64::MAX);
        while let Some(row) = rows.next().await {
            found.push(row?);
        }
        drop(rows);
        let mut problems = Vec::new();
        for row in found {
            problems.extend(self.anchored(&row).await?);
            let body = row.body_json()?;
            let request = body["request"].as_str().unwrap_or_default().to_string();
            let digest = body["subject_sha256"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            expected.entry(request).or_insert((digest, row.seq));
        }
        let index = sqlx::query("SELECT request, subject_sha256, seq FROM erasure")
            .fetch_all(&self.pool)
            .await?;
        let mut actual: BTreeMap<String, (String, i64)> = BTreeMap::new();
        for row in &index {
            actual.insert(
                row.try_get("request")?,
                (row.try_get("subject_sha256")?, row.try_get("seq")?),
            );
        }
        for (request, want) in &expected {
            match actual.get(request) {
                None => problems.push(format!(
                    "erasure request {request} (ledger row {}) is missing from the erasure index",
                    want.1
                )),
                Some(got) if got != want => problems.push(format!(
                    "erasure request {request} in the erasure index differs from ledger row {}",
                    want.1
                )),
                Some(_) => {}
            }
        }
        for request in actual.keys().filter(|r| !expected.contains_key(*r)) {
            problems.push(format!(
                "erasure request {request} is in the erasure index but not in the ledger"
            ));
        }
        Ok(problems)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub rows: u64,
    pub head: String,
    pub problems: Vec<String>,
}

/// The body of an outcome row: the intent it closes, and what happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutcomeBody {
    pub intent: Intent,
    pub outcome: Outcome,
}

pub struct RunJournal<'a> {
    ledger: &'a Ledger,
    run_id: String,
    lease: Option<Lease>,
}

impl Journal for RunJournal<'_> {
    async fn record_intents(&self, groups: &[IntentGroup]) -> Result<Vec<Recorded>, JournalError> {
        let mut tx = self.ledger.begin().await?;
        if let Some(lease) = &self.lease {
            self.ledger.check_lease_in(&mut tx, lease).await?;
        }
        // The holds are read inside the transaction that records the intents:
        // a hold committed before it protects these recordings, and one
        // committed after finds the intents already recorded (and deleted or
        // about to be). SQLite's BEGIN IMMEDIATE and PostgreSQL's table lock
        // serialize this against `hold place`.
        let holds = Ledger::active_holds_in(&mut tx).await?;
        let mut decisions = Vec::with_capacity(groups.len());
        let mut rows = Vec::new();
        for group in groups {
            let held = group
                .target
                .as_ref()
                .and_then(|t| hold::covering(&holds, t));
            match held {
                Some(h) => decisions.push(Some(h.case.clone())),
                None => {
                    decisions.push(None);
                    for i in &group.intents {
                        rows.push(NewRow {
                            kind: kind::INTENT,
                            run_id: self.run_id.clone(),
                            store: Some(i.store.clone()),
                            key: Some(i.key.clone()),
                            ref_seq: None,
                            body: serde_json::to_value(i)?,
                        });
                    }
                }
            }
        }
        let seqs = Ledger::append_in(&mut tx, rows).await?;
        let style = Placeholders::of(&tx);
        for chunk in seqs.chunks(SEQS_PER_STATEMENT) {
            let sql = values_statement(
                "INSERT INTO pending_intent (seq) VALUES ",
                chunk.len(),
                1,
                style,
            );
            let full = chunk.len() == SEQS_PER_STATEMENT;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(full);
            for seq in chunk {
                q = q.bind(*seq);
            }
            q.execute(&mut *tx).await.map_err(LedgerError::from)?;
        }
        tx.commit().await.map_err(LedgerError::from)?;
        let mut seqs = seqs.into_iter();
        Ok(groups
            .iter()
            .zip(decisions)
            .map(|(group, held)| match held {
                Some(case) => Recorded::Held { case },
                None => Recorded::Intents(seqs.by_ref().take(group.intents.len()).collect()),
            })
            .collect())
    }

    async fn record_outcomes(&self, outcomes: &[(Intent, Outcome)]) -> Result<(), JournalError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let rows = outcomes
            .iter()
            .map(|(i, o)| {
                Ok(NewRow {
                    kind: kind::OUTCOME,
                    run_id: self.run_id.clone(),
                    store: Some(i.store.clone()),
                    key: Some(i.key.clone()),
                    ref_seq: Some(o.intent),
                    body: serde_json::to_value(OutcomeBody {
                        intent: i.clone(),
                        outcome: o.clone(),
                    })?,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let mut tx = self.ledger.begin().await?;
        // Some outcomes leave the intent pending: the next run's recovery
        // checks the object again and records what it finds.
        let closed: Vec<i64> = outcomes
            .iter()
            .filter(|(i, o)| !crate::execute::stays_pending(i, o))
            .map(|(_, o)| o.intent)
            .collect();
        Ledger::append_in(&mut tx, rows).await?;
        let style = Placeholders::of(&tx);
        for chunk in closed.chunks(SEQS_PER_STATEMENT) {
            let sql = format!(
                "DELETE FROM pending_intent WHERE seq IN ({})",
                style.list(1, chunk.len())
            );
            let full = chunk.len() == SEQS_PER_STATEMENT;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(full);
            for seq in chunk {
                q = q.bind(*seq);
            }
            q.execute(&mut *tx).await.map_err(LedgerError::from)?;
        }
        tx.commit().await.map_err(LedgerError::from)?;
        Ok(())
    }
}

/// Ledger rows per INSERT (10 parameters each: well under SQLite's 32,766
/// and PostgreSQL's 65,535 bound parameters). Only statements of the full
/// size are kept prepared: each other size would be another large prepared
/// statement in the connection's cache, and memory would creep up with the
/// number of batches a run makes.
const ROWS_PER_STATEMENT: usize = 200;
/// Sequence numbers per pending-index statement.
const SEQS_PER_STATEMENT: usize = 1000;

/// Bound-parameter placeholders: `$N` for PostgreSQL; `?` for SQLite, where
/// numbered ones cost a linear search per parameter when binding.
#[derive(Clone, Copy)]
enum Placeholders {
    Numbered,
    Positional,
}

impl Placeholders {
    fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Placeholders::Positional
        } else {
            Placeholders::Numbered
        }
    }

    fn list(self, from: usize, count: usize) -> String {
        (from..from + count)
            .map(|n| match self {
                Placeholders::Numbered => format!("${n}"),
                Placeholders::Positional => "?".to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `prefix` followed by `rows` groups of `width` placeholders: `($1, $2),
/// ($3, $4)` or `(?, ?), (?, ?)`. Only placeholders are generated; values are bound.
fn values_statement(prefix: &str, rows: usize, width: usize, style: Placeholders) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * width * 6);
    sql.push_str(prefix);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&style.list(r * width + 1, width));
        sql.push(')');
    }
    sql
}

/// Timestamps as the ledger and certificates write them.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
