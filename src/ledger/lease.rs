//! The run lease and the database clock.
//!
//! Two runs must never overlap on the same stores, even when Kubernetes
//! starts a CronJob twice. A database advisory lock is not enough (it vanishes
//! silently with its pooled connection), so the lease is a row: a holder, an
//! expiry by the database's clock, and an epoch that grows with every new
//! holder. Every deletion intent is written in a transaction that first checks
//! that the lease is still ours at our epoch (fencing): a worker that was
//! paused past its expiry, and whose lease passed to another, cannot start a
//! deletion when it wakes up. A lease left by a crashed run expires; a
//! holder whose process is gone is taken over at once when it ran in the
//! same PID namespace of the same boot of the same host: a process id means
//! nothing elsewhere (another container on the host network, a pod with
//! `hostNetwork`, `unshare --pid` all share the host name), and there the
//! lease is only ever left to expire.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Backend, Ledger, LedgerError, Result};

/// The lease an unsharded run takes; a shard takes `retention/shard-I-of-N`.
pub const RETENTION_LEASE: &str = "retention";

/// The kinds of retention lease, for the rule of which may be held together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `retention`: an unsharded run, or an erasure.
    Whole,
    /// `retention/shard-I-of-N`: one of N shards.
    Shards(u32),
}

impl Family {
    fn of(name: &str) -> Option<Family> {
        if name == RETENTION_LEASE {
            return Some(Family::Whole);
        }
        let rest = name.strip_prefix("retention/shard-")?;
        let (_, n) = rest.split_once("-of-")?;
        n.parse().ok().map(Family::Shards)
    }

    /// Only shards of the same split run side by side.
    fn compatible(self, other: Family) -> bool {
        matches!((self, other), (Family::Shards(a), Family::Shards(b)) if a == b)
    }
}

/// Who holds the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    /// The pass a shard belongs to: the run id of the first shard of its
    /// split to take a lease while no other was live. Shards of one pass
    /// check the safety limits on their plans together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// Where `pid` names a process: the kernel's boot id and the PID
    /// namespace (`/proc/self/ns/pid`), e.g.
    /// `45397a9a-7f45-49ec-bbfe-1dba6224673a/pid:[4026531836]`. `None` when
    /// either cannot be read (or from a lethe that did not record it): such
    /// a holder is never judged gone, its lease only expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_scope: Option<String>,
}

impl Holder {
    pub fn this_process(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_string(),
            host: hostname(),
            pid: std::process::id(),
            pass: None,
            pid_scope: pid_scope(),
        }
    }

    /// Whether this holder is a process that no longer exists, which only
    /// a process of the same host, boot and PID namespace can tell.
    fn is_dead_here(&self) -> bool {
        self.is_dead_in(&hostname(), pid_scope().as_deref(), |pid| {
            std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
    }

    fn is_dead_in(&self, host: &str, scope: Option<&str>, exists: impl Fn(u32) -> bool) -> bool {
        self.host == host
            && scope.is_some()
            && self.pid_scope.as_deref() == scope
            && !exists(self.pid)
    }
}

/// This process's boot id and PID namespace (see [`Holder::pid_scope`]).
fn pid_scope() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let (boot, namespace) = (boot.trim(), namespace.to_str()?);
    (!boot.is_empty() && !namespace.is_empty()).then(|| format!("{boot}/{namespace}"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// A lease we hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: Holder,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
}

/// Why the lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("another lethe run ({} on {}, pid {}) holds the run lease until {until}; nothing was done", holder.run_id, holder.host, holder.pid)]
    Held {
        holder: Holder,
        until: DateTime<Utc>,
    },
    #[error("the run lease passed to another run; no further deletions are started")]
    Lost,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<sqlx::Error> for LeaseError {
    fn from(e: sqlx::Error) -> Self {
        LeaseError::Ledger(e.into())
    }
}

fn parse_time(seq: i64, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| LedgerError::Corrupt {
            seq,
            message: format!("bad time {text:?}: {e}"),
        })
}

fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Ledger {
    fn now_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now') AS now",
            Backend::Postgres => {
                "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS now"
            }
        }
    }

    /// The database's clock: in production the one clock every worker shares.
    pub async fn now(&self) -> Result<DateTime<Utc>> {
        let row = sqlx::query(self.now_sql()).fetch_one(&self.pool).await?;
        parse_time(0, &row.try_get::<String, _>("now")?)
    }

    async fn now_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<DateTime<Utc>> {
        let row = sqlx::query(self.now_sql()).fetch_one(&mut **tx).await?;
        parse_time(0, &row.try_get::<String, _>("now")?)
    }

    /// Takes the run lease for `ttl`, or says who has it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> std::result::Result<Lease, LeaseError> {
        let mut tx = self.begin().await?;
        let now = self.now_in(&mut tx).await?;
        let current = sqlx::query("SELECT holder, epoch, expires_at FROM lease WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        // Runs that cover the same stores exclude each other whatever their
        // sharding: an unsharded run or an erasure holds `retention` alone,
        // and the shards of one split run (`retention/shard-I-of-N`, one N)
        // hold theirs side by side, as the members of one pass.
        let mut holder = holder.clone();
        if let Some(family) = Family::of(name) {
            let others = sqlx::query("SELECT name, holder, expires_at FROM lease WHERE name <> $1")
                .bind(name.to_string())
                .fetch_all(&mut *tx)
                .await?;
            let mut pass = None;
            for row in &others {
                let Some(other_family) = Family::of(&row.try_get::<String, _>("name")?) else {
                    continue;
                };
                let until = parse_time(0, &row.try_get::<String, _>("expires_at")?)?;
                let other: Holder = serde_json::from_str(&row.try_get::<String, _>("holder")?)
                    .map_err(|e| LedgerError::Corrupt {
                        seq: 0,
                        message: format!("lease holder: {e}"),
                    })?;
                if until <= now || other.is_dead_here() {
                    continue;
                }
                if !other_family.compatible(family) {
                    return Err(LeaseError::Held {
                        holder: other,
                        until,
                    });
                }
                // A live shard of the same split: this one joins its pass.
                pass = pass.or(other.pass);
            }
            if let Family::Shards(_) = family {
                holder.pass = Some(pass.unwrap_or_else(|| holder.run_id.clone()));
            }
        }
        let holder = &holder;
        let epoch = match &current {
            None => 1,
            Some(row) => {
                let epoch: i64 = row.try_get("epoch")?;
                let other: Holder = serde_json::from_str(&row.try_get::<String, _>("holder")?)
                    .map_err(|e| LedgerError::Corrupt {
                        seq: 0,
                        message: format!("lease holder: {e}"),
                    })?;
                let until = parse_time(0, &row.try_get::<String, _>("expires_at")?)?;
                if until > now && other != *holder && !other.is_dead_here() {
                    return Err(LeaseError::Held {
                        holder: other,
                        until,
                    });
                }
                if until > now && other.is_dead_here() {
                    tracing::warn!(run_id = %other.run_id, pid = other.pid, "the run holding the lease is gone (crashed); taking the lease over");
                }
                epoch + 1
            }
        };
        let expires_at =
            now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
        let holder_json = serde_json::to_string(holder).map_err(|e| LedgerError::Corrupt {
            seq: 0,
            message: e.to_string(),
        })?;
        let sql = if current.is_some() {
            "UPDATE lease SET holder = $2, epoch = $3, expires_at = $4 WHERE name = $1"
        } else {
            "INSERT INTO lease (name, holder, epoch, expires_at) VALUES ($1, $2, $3, $4)"
        };
        sqlx::query(sql)
            .bind(name.to_string())
            .bind(holder_json)
            .bind(epoch)
            .bind(format_time(expires_at))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Lease {
            name: name.to_string(),
            holder: holder.clone(),
            epoch,
            expires_at,
        })
    }

    /// The runs holding an unexpired lease (a shard's run, say): their
    /// pending intents are in flight, not left by a crash.
    pub async fn live_runs(&self) -> Result<std::collections::HashSet<String>> {
        let now = self.now().await?;
        let rows = sqlx::query("SELECT holder, expires_at FROM lease")
            .fetch_all(&self.pool)
            .await?;
        let mut live = std::collections::HashSet::new();
        for row in &rows {
            let until = parse_time(0, &row.try_get::<String, _>("expires_at")?)?;
            let holder: Holder = serde_json::from_str(&row.try_get::<String, _>("holder")?)
                .map_err(|e| LedgerError::Corrupt {
                    seq: 0,
                    message: e.to_string(),
                })?;
            if until > now && !holder.is_dead_here() {
                live.insert(holder.run_id);
            }
        }
        Ok(live)
    }

    /// Extends our lease; `Lost` if it is no longer ours.
    pub async fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> std::result::Result<DateTime<Utc>, LeaseError> {
        let mut tx = self.begin().await?;
        Self::check_lease_in(self, &mut tx, lease).await?;
        let expires_at = self.now_in(&mut tx).await?
            + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
        sqlx::query("UPDATE lease SET expires_at = $2 WHERE name = $1")
            .bind(lease.name.clone())
            .bind(format_time(expires_at))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(expires_at)
    }

    /// Gives the lease back (it expires now), if it is still ours.
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let mut tx = self.begin().await?;
        if Self::check_lease_in(self, &mut tx, lease).await.is_ok() {
            let now = self.now_in(&mut tx).await?;
            sqlx::query("UPDATE lease SET expires_at = $2 WHERE name = $1")
                .bind(lease.name.clone())
                .bind(format_time(now))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Fencing: inside `tx`, the lease must still be ours, at our epoch, unexpired.
    pub(super) async fn check_lease_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        lease: &Lease,
    ) -> std::result::Result<(), LeaseError> {
        let now = self.now_in(tx).await?;
        let row = sqlx::query("SELECT holder, epoch, expires_at FROM lease WHERE name = $1")
            .bind(lease.name.clone())
            .fetch_optional(&mut **tx)
            .await?;
        let Some(row) = row else {
            return Err(LeaseError::Lost);
        };
        let epoch: i64 = row.try_get("epoch")?;
        let until = parse_time(0, &row.try_get::<String, _>("expires_at")?)?;
        let holder: Holder =
            serde_json::from_str(&row.try_get::<String, _>("holder")?).map_err(|e| {
                LedgerError::Corrupt {
                    seq: 0,
                    message: e.to_string(),
                }
            })?;
        if epoch != lease.epoch || holder != lease.holder || until <= now {
            return Err(LeaseError::Lost);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid_scope: Option<&str>) -> Holder {
        Holder {
            run_id: "r".into(),
            host: "node-1".into(),
            pid: 4242,
            pass: None,
            pid_scope: pid_scope.map(str::to_string),
        }
    }

    #[test]
    fn a_holder_is_judged_gone_only_from_its_own_host_boot_and_pid_namespace() {
        let here = "boot-1/pid:[4026531836]";
        let gone = |_| false;
        assert!(holder(Some(here)).is_dead_in("node-1", Some(here), gone));
        assert!(
            !holder(Some(here)).is_dead_in("node-1", Some(here), |_| true),
            "alive"
        );
        // Another PID namespace on the same host name: a container on the
        // host network, a hostNetwork pod, `unshare --pid`.
        let other_ns = "boot-1/pid:[4026532179]";
        assert!(!holder(Some(here)).is_dead_in("node-1", Some(other_ns), gone));
        // The same namespace inode after a reboot is another namespace.
        assert!(!holder(Some(here)).is_dead_in("node-1", Some("boot-2/pid:[4026531836]"), gone));
        assert!(!holder(Some(here)).is_dead_in("node-2", Some(here), gone));
        // Unknown on either side: the lease is left to expire.
        assert!(!holder(None).is_dead_in("node-1", Some(here), gone));
        assert!(!holder(Some(here)).is_dead_in("node-1", None, gone));
        assert!(!holder(None).is_dead_in("node-1", None, gone));
    }

    #[test]
    fn this_process_knows_its_boot_and_pid_namespace() {
        let scope = Holder::this_process("r").pid_scope.unwrap();
        assert!(scope.contains("/pid:["), "{scope}");
        // A holder from a lethe that did not record it still reads.
        let old: Holder = serde_json::from_str(r#"{"run_id":"r","host":"h","pid":7}"#).unwrap();
        assert_eq!(old.pid_scope, None);
    }
}
