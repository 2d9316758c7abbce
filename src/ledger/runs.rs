//! Runs as the ledger records them: the `run-started` and `run-finished`
//! rows of a run, the last successful retention pass (for the metrics), and
//! the plans the shards of a split pass record so that they can check the
//! safety limits on their sum.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::Row;

use super::event::{Event, Kind, Purpose, RunFinished, RunStarted, RunStatus, ShardPlan};
use super::sql::select_rows;
use super::{Ledger, LedgerRow, Result};

/// A run's row with its typed body.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow<T> {
    pub seq: i64,
    /// When the row was appended (the ledger's `at`).
    pub at: String,
    pub body: T,
}

impl Ledger {
    /// The `run-started` and `run-finished` rows of one run, wherever they are.
    pub async fn run_rows(
        &self,
        run_id: &str,
    ) -> Result<(Option<RunRow<RunStarted>>, Option<RunRow<RunFinished>>)> {
        let rows = sqlx::query(select_rows!(
            "WHERE run_id = $1 AND kind IN ('run-started', 'run-finished') ORDER BY seq"
        ))
        .bind(run_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut started = None;
        let mut finished = None;
        for row in &rows {
            let row = LedgerRow::from_any(row)?;
            match row.event()? {
                Event::RunStarted(body) => {
                    started = Some(RunRow {
                        seq: row.seq,
                        at: row.at,
                        body,
                    })
                }
                Event::RunFinished(body) => {
                    finished = Some(RunRow {
                        seq: row.seq,
                        at: row.at,
                        body,
                    })
                }
                _ => {}
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
            "SELECT f.body AS finished, s.body AS started FROM ledger f \
             JOIN ledger s ON s.run_id = f.run_id AND s.kind = 'run-started' \
             WHERE f.kind = 'run-finished' ORDER BY f.seq DESC",
        )
        .fetch(&self.pool);
        while let Some(row) = finished.next().await {
            let row = row?;
            // A row that does not read as a run's end or start (a test's, an
            // edit) is no success.
            let Ok(end) =
                serde_json::from_str::<RunFinished>(&row.try_get::<String, _>("finished")?)
            else {
                continue;
            };
            let Ok(start) =
                serde_json::from_str::<RunStarted>(&row.try_get::<String, _>("started")?)
            else {
                continue;
            };
            if end.status == RunStatus::Completed
                && start.purpose == Purpose::Retention
                && start.shard.as_deref() == shard
            {
                return Ok(Some(end.finished_at));
            }
        }
        Ok(None)
    }

    /// Records a shard's plan counts (see [`ShardPlan`]).
    pub async fn record_shard_plan(&self, run_id: &str, plan: &ShardPlan) -> Result<i64> {
        self.record(run_id, &Event::ShardPlanned(plan.clone()))
            .await
    }

    /// The plans recorded so far by the shards of `pass`, one per shard (the
    /// latest, if a shard planned twice).
    pub async fn shard_plans(&self, pass: &str) -> Result<BTreeMap<u32, ShardPlan>> {
        let mut out = BTreeMap::new();
        let mut rows = self.rows_of_kind(Kind::ShardPlanned, 1, i64::MAX);
        while let Some(row) = rows.next().await {
            let row = row?;
            let plan: ShardPlan = serde_json::from_str(&row.body)
                .map_err(|e| row.corrupt(format!("shard plan: {e}")))?;
            if plan.pass == pass {
                out.insert(plan.shard, plan);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{StoreFinished, Tool, scratch};
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn started(purpose: Purpose, shard: Option<&str>) -> Event {
        Event::RunStarted(RunStarted {
            started_at: at("2026-12-01T09:00:00Z"),
            purpose,
            approved_plan_sha256: None,
            shard: shard.map(str::to_string),
            tool: Tool::lethe(),
            policies: vec![],
            stores: vec![],
        })
    }

    fn finished(status: RunStatus, when: &str) -> Event {
        Event::RunFinished(RunFinished {
            finished_at: at(when),
            status,
            safety_breaches: vec![],
            stores: vec![StoreFinished {
                name: "recordings".into(),
                error: None,
                planned: None,
                recordings_deleted: 0,
                objects_deleted: 0,
                failed: 0,
            }],
        })
    }

    #[tokio::test]
    async fn a_run_s_rows_are_found_by_its_id() {
        let (_dir, ledger) = scratch().await;
        ledger
            .record("r1", &started(Purpose::Retention, None))
            .await
            .unwrap();
        ledger
            .record("r2", &started(Purpose::Retention, None))
            .await
            .unwrap();
        let end = finished(RunStatus::CompletedWithFailures, "2026-12-01T09:05:00Z");
        ledger.record("r1", &end).await.unwrap();
        let (s, f) = ledger.run_rows("r1").await.unwrap();
        assert_eq!(s.unwrap().seq, 1);
        let f = f.unwrap();
        assert_eq!(f.seq, 3);
        assert_eq!(Event::RunFinished(f.body), end);
        let (s, f) = ledger.run_rows("r2").await.unwrap();
        assert!(s.is_some() && f.is_none());
        assert_eq!(ledger.run_rows("r3").await.unwrap(), (None, None));
    }

    #[tokio::test]
    async fn the_last_success_is_the_newest_completed_retention_run_of_its_shard() {
        let (_dir, ledger) = scratch().await;
        assert_eq!(ledger.last_success(None).await.unwrap(), None);
        ledger
            .record("a", &started(Purpose::Retention, None))
            .await
            .unwrap();
        ledger
            .record("a", &finished(RunStatus::Completed, "2026-12-01T09:01:00Z"))
            .await
            .unwrap();
        ledger
            .record("b", &started(Purpose::Retention, None))
            .await
            .unwrap();
        ledger
            .record("b", &finished(RunStatus::Failed, "2026-12-01T09:02:00Z"))
            .await
            .unwrap();
        ledger
            .record("c", &started(Purpose::Erasure, None))
            .await
            .unwrap();
        ledger
            .record("c", &finished(RunStatus::Completed, "2026-12-01T09:03:00Z"))
            .await
            .unwrap();
        ledger
            .record("d", &started(Purpose::Retention, Some("1/2")))
            .await
            .unwrap();
        ledger
            .record("d", &finished(RunStatus::Completed, "2026-12-01T09:04:00Z"))
            .await
            .unwrap();
        assert_eq!(
            ledger.last_success(None).await.unwrap(),
            Some(at("2026-12-01T09:01:00Z"))
        );
        assert_eq!(
            ledger.last_success(Some("1/2")).await.unwrap(),
            Some(at("2026-12-01T09:04:00Z"))
        );
        assert_eq!(ledger.last_success(Some("2/2")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_latest_plan_of_each_shard_of_a_pass_counts() {
        let (_dir, ledger) = scratch().await;
        let plan = |pass: &str, shard, delete| ShardPlan {
            pass: pass.into(),
            shard,
            of: 2,
            stores: [("recordings".to_string(), (delete, 10))]
                .into_iter()
                .collect(),
        };
        ledger
            .record_shard_plan("s0", &plan("p", 0, 1))
            .await
            .unwrap();
        ledger
            .record_shard_plan("s1", &plan("p", 1, 2))
            .await
            .unwrap();
        ledger
            .record_shard_plan("s0", &plan("p", 0, 3))
            .await
            .unwrap();
        ledger
            .record_shard_plan("x", &plan("other", 0, 9))
            .await
            .unwrap();
        let plans = ledger.shard_plans("p").await.unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[&0], plan("p", 0, 3));
        assert_eq!(plans[&1], plan("p", 1, 2));
    }
}
