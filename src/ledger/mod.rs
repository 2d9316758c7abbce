//! The ledger: the only module that speaks SQL.
//!
//! Every fact lethe establishes (a run started, an intent to delete, an
//! outcome, a run finished, a certificate issued, a hold placed or released,
//! an erasure requested) is one append-only row, an [`Event`] chained to the
//! previous row by SHA-256 over its canonical JSON, so that `ledger verify`
//! detects any edited, inserted, removed or reordered row. The SQL is portable
//! between SQLite (the default) and PostgreSQL through sqlx's `Any` driver,
//! and migrations are applied automatically when the ledger opens. Alongside
//! the chain, derived indexes (pending intents, holds, erasures) make the
//! questions a run asks cheap; they are not themselves evidence, and are
//! checked against the chain. This file holds the handle, the error type and
//! the map of the submodules; each submodule owns one concern.

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::AnyPool;

use crate::config::DatabaseUrl;

mod certificates;
mod chain;
mod erasures;
mod event;
mod holds;
mod index;
mod journal;
mod lease;
mod pool;
mod requests;
mod runs;
mod sql;

pub use certificates::Coverage;
pub use chain::{ChainReport, GENESIS, LedgerRow};
pub use event::{
    CertificateRecord, ErasureRequest, Event, Kind, OutcomeBody, PolicyRef, Purpose, Release,
    ReleaseApproval, ReleaseRequest, RequestExtended, RequestOpened, RunFinished, RunStarted,
    RunStatus, ShardPlan, StoreFinished, StoreRef, Tool,
};
pub use holds::{HoldRecord, ReleaseState};
pub use journal::RunJournal;
pub use lease::{Holder, Lease, LeaseError, RETENTION_LEASE};
pub use requests::Refusal;
pub use runs::RunRow;

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
    #[error("a {0} row is recorded with its own index, not through `Ledger::record`")]
    Indexed(Kind),
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
    /// What stamps each row's `at`: this machine's clock, or a run's.
    clock: crate::clock::SharedClock,
}

impl Ledger {
    /// The same ledger, stamping its rows with `clock` (a run's).
    pub fn with_clock(&self, clock: crate::clock::SharedClock) -> Self {
        Self {
            clock,
            ..self.clone()
        }
    }
}

/// Where a SQLite ledger file lives, for messages and existence checks.
pub fn sqlite_path(url: &DatabaseUrl) -> Option<PathBuf> {
    let rest = url.expose().strip_prefix("sqlite://")?;
    Some(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

/// Timestamps as the ledger and certificates write them.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A fresh SQLite ledger in a temporary folder, for the unit tests of the
/// submodules (the folder goes when the guard is dropped).
#[cfg(test)]
pub(crate) async fn scratch() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("ledger.db").display()
    );
    let ledger = Ledger::open(&DatabaseUrl::new(url))
        .await
        .expect("a fresh ledger opens");
    (dir, ledger)
}

/// A hold on one key, for the unit tests of the submodules.
#[cfg(test)]
pub(crate) fn sample_hold(case: &str) -> crate::hold::Hold {
    serde_json::from_value(serde_json::json!({
        "case": case, "reason": "litigation", "placed_by": "dpo",
        "placed_at": "2026-12-01T09:18:28.479Z",
        "selectors": [{"by": "key", "key": "calls/a.wav"}],
    }))
    .expect("a valid hold")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_path_is_read_from_the_url_without_its_options() {
        let url = DatabaseUrl::new("sqlite:///var/lib/lethe/ledger.db?mode=rwc".to_string());
        assert_eq!(
            sqlite_path(&url),
            Some(PathBuf::from("/var/lib/lethe/ledger.db"))
        );
        let pg = DatabaseUrl::new("postgres://u:p@db/lethe".to_string());
        assert_eq!(sqlite_path(&pg), None);
    }

    #[test]
    fn timestamps_are_written_to_the_millisecond_in_utc() {
        let t = DateTime::parse_from_rfc3339("2026-12-01T09:18:28.506789+01:00").unwrap();
        assert_eq!(timestamp(t.with_timezone(&Utc)), "2026-12-01T08:18:28.506Z");
    }
}
