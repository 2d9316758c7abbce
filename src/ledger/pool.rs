//! The connection pool and the schema: opening a ledger (SQLite or
//! PostgreSQL), applying the migrations in `migrations/`, and the write
//! transaction every appender takes, which keeps the chain linear.

use sqlx::any::AnyPoolOptions;

use super::{Backend, Ledger, LedgerError, Result, sqlite_path};
use crate::config::DatabaseUrl;

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
            // Temporary tables, sorts and statement journals stay in memory:
            // SQLite's temporary files (etilqs_* in TMPDIR, unlinked only
            // after they are opened) hold ledger pages, recording keys
            // included, and a process killed in between would leave one.
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA busy_timeout = 30000",
                        "PRAGMA temp_store = MEMORY",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        if backend == Backend::Postgres {
            // Every write transaction holds the ledger's table lock. A worker
            // cut off from the server in the middle of one (a network
            // partition, a paused process) would hold it for as long as its
            // TCP connection lasts, and every other worker, the one that
            // takes its lease over included, would wait behind it. The
            // server ends such a session instead: lethe's transactions never
            // wait on anything but the database, so a minute idle inside one
            // means the client is gone. A timeout set by the operator (in
            // the URL's `options`, or for the role) is left as it is.
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query(
                        "SELECT set_config('idle_in_transaction_session_timeout', '60s', false) \
                         WHERE current_setting('idle_in_transaction_session_timeout') IN ('0', '0ms')",
                    )
                    .fetch_optional(&mut *conn)
                    .await?;
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
        let ledger = Self {
            pool,
            backend,
            clock: crate::clock::SystemClock::shared(),
        };
        ledger.migrate().await?;
        Ok(ledger)
    }

    /// Applies the migrations. Two first runs may migrate a fresh SQLite file
    /// at once (SQLite has no migration lock): the loser finds a table
    /// already created and tries again, when the winner's migrations are on
    /// record.
    async fn migrate(&self) -> Result<()> {
        let migrator = sqlx::migrate!("./migrations");
        let mut attempt = 0;
        loop {
            match migrator.run(&self.pool).await {
                Ok(()) => return Ok(()),
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
    }

    pub async fn close(self) {
        self.pool.close().await;
    }

    /// A write transaction: one appender at a time keeps the chain linear
    /// (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's table lock); readers are
    /// not blocked.
    pub(super) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("LOCK TABLE ledger IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::super::scratch;

    #[tokio::test]
    async fn a_fresh_ledger_has_every_table_and_opens_again() {
        let (dir, ledger) = scratch().await;
        // Literal statements: SQL is never formatted (tests/it/security.rs).
        for (table, sql) in [
            ("ledger", "SELECT COUNT(*) AS n FROM ledger"),
            ("pending_intent", "SELECT COUNT(*) AS n FROM pending_intent"),
            ("hold", "SELECT COUNT(*) AS n FROM hold"),
            ("lease", "SELECT COUNT(*) AS n FROM lease"),
            ("erasure", "SELECT COUNT(*) AS n FROM erasure"),
        ] {
            let row = sqlx::query(sql).fetch_one(&ledger.pool).await.unwrap();
            assert_eq!(row.try_get::<i64, _>("n").unwrap(), 0, "{table}");
        }
        // Nothing of the ledger goes to SQLite's temporary files.
        let row = sqlx::query("PRAGMA temp_store")
            .fetch_one(&ledger.pool)
            .await
            .unwrap();
        assert_eq!(row.try_get::<i64, _>(0).unwrap(), 2, "temp_store = MEMORY");
        ledger.close().await;
        // Migrations already on record are not applied twice.
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("ledger.db").display()
        );
        let again = super::Ledger::open(&crate::config::DatabaseUrl::new(url))
            .await
            .unwrap();
        assert_eq!(again.head().await.unwrap().0, 0);
    }

    #[tokio::test]
    async fn a_missing_database_folder_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/ledger.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        super::Ledger::open(&crate::config::DatabaseUrl::new(url))
            .await
            .unwrap();
        assert!(path.exists());
    }
}
