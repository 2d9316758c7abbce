//! Legal holds: placing one, releasing it (at once, or by a request that
//! other people approve), and the `hold` index the intent transaction reads.
//! The `hold-*` rows of the chain are the evidence; the index is derived
//! from them in the same transaction and checked against them by
//! [`Ledger::verify_indexes`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::event::{Event, Kind, Release, ReleaseApproval, ReleaseRequest};
use super::{Ledger, LedgerError, Result};
use crate::hold::Hold;

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

/// Where a release stands after a request or an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseState {
    /// Released (ledger row).
    Released(i64),
    /// Waiting for this many more approvals from other people.
    Awaiting { requested_by: String, more: usize },
}

/// The run id of every row about the hold of `case`.
fn hold_run(case: &str) -> String {
    format!("hold {case}")
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl Ledger {
    pub(super) async fn active_holds_in(tx: &mut Tx) -> Result<Vec<Hold>> {
        let rows = sqlx::query(
            "SELECT placed_seq, body FROM hold WHERE released_seq IS NULL ORDER BY placed_seq",
        )
        .fetch_all(&mut **tx)
        .await?;
        rows.iter().map(hold_from_row).collect()
    }

    /// The holds in force.
    pub async fn active_holds(&self) -> Result<Vec<Hold>> {
        let rows = sqlx::query(
            "SELECT placed_seq, body FROM hold WHERE released_seq IS NULL ORDER BY placed_seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(hold_from_row).collect()
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
            let hold = hold_from_row(row)?;
            let placed_seq: i64 = row.try_get("placed_seq")?;
            let released = match row.try_get::<Option<i64>, _>("released_seq")? {
                Some(seq) => Some(self.release_at(seq).await?),
                None => None,
            };
            out.push(HoldRecord {
                release_requested: requests.remove(&hold.case),
                hold,
                placed_seq,
                released,
            });
        }
        Ok(out)
    }

    /// The release recorded in row `seq`.
    async fn release_at(&self, seq: i64) -> Result<Release> {
        let row = self.row(seq).await?.ok_or(LedgerError::Corrupt {
            seq,
            message: "missing release row".into(),
        })?;
        serde_json::from_str(&row.body).map_err(|e| row.corrupt(e.to_string()))
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
        let row = Event::HoldPlaced(hold.clone())
            .to_row(&hold_run(&hold.case))
            .map_err(|e| LedgerError::Corrupt {
                seq: 0,
                message: e.to_string(),
            })?;
        // The index keeps the hold exactly as the row's body has it.
        let body = row.body.clone();
        let seq = self.append_in(&mut tx, vec![row]).await?[0];
        sqlx::query("INSERT INTO hold (case_id, placed_seq, body) VALUES ($1, $2, $3)")
            .bind(hold.case.clone())
            .bind(seq)
            .bind(body)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq)
    }

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
        let request = ReleaseRequest {
            by: release.by.clone(),
            reason: release.reason.clone(),
            at: release.at,
            approved_by: vec![],
        };
        let event = Event::HoldReleaseRequested {
            placed_seq,
            request,
        };
        self.append_event_in(&mut tx, &hold_run(&release.case), &event)
            .await?;
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
        let approval = ReleaseApproval {
            case: case.to_string(),
            by: by.to_string(),
            at,
        };
        let event = Event::HoldReleaseApproved {
            placed_seq,
            approval,
        };
        self.append_event_in(&mut tx, &hold_run(case), &event)
            .await?;
        let mut approved_by = pending.approved_by;
        approved_by.push(by.to_string());
        let state = if approved_by.len() + 1 >= people {
            let release = Release {
                case: case.to_string(),
                by: pending.by,
                reason: pending.reason,
                at,
                approved_by,
            };
            ReleaseState::Released(self.release_in(&mut tx, &release, placed_seq).await?)
        } else {
            ReleaseState::Awaiting {
                requested_by: pending.by,
                more: people - 1 - approved_by.len(),
            }
        };
        tx.commit().await?;
        Ok(state)
    }

    /// Releases a hold at once; it cannot be placed again under the same case id.
    pub async fn release_hold(&self, release: &Release) -> Result<i64> {
        let mut tx = self.begin().await?;
        let placed_seq = Self::active_hold_in(&mut tx, &release.case).await?;
        let seq = self.release_in(&mut tx, release, placed_seq).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// The placed_seq of the active hold for `case`.
    async fn active_hold_in(tx: &mut Tx, case: &str) -> Result<i64> {
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
    async fn pending_release_in(tx: &mut Tx, placed_seq: i64) -> Result<Option<ReleaseRequest>> {
        let rows = sqlx::query("SELECT seq, kind, body FROM ledger WHERE ref_seq = $1 AND kind IN ('hold-release-requested', 'hold-release-approved') ORDER BY seq")
            .bind(placed_seq)
            .fetch_all(&mut **tx)
            .await?;
        let mut pending: Option<ReleaseRequest> = None;
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let kind: String = row.try_get("kind")?;
            let body: String = row.try_get("body")?;
            let event = Event::decode(&kind, Some(placed_seq), &body)
                .map_err(|message| LedgerError::Corrupt { seq, message })?;
            match event {
                Event::HoldReleaseRequested { request, .. } => pending = Some(request),
                Event::HoldReleaseApproved { approval, .. } => {
                    if let Some(p) = pending.as_mut() {
                        p.approved_by.push(approval.by);
                    }
                }
                _ => {}
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

    /// Records the release and marks the index entry released.
    async fn release_in(&self, tx: &mut Tx, release: &Release, placed_seq: i64) -> Result<i64> {
        let event = Event::HoldReleased {
            placed_seq,
            release: release.clone(),
        };
        let seq = self
            .append_event_in(tx, &hold_run(&release.case), &event)
            .await?;
        sqlx::query("UPDATE hold SET released_seq = $1 WHERE case_id = $2")
            .bind(seq)
            .bind(release.case.clone())
            .execute(&mut **tx)
            .await?;
        Ok(seq)
    }
}

fn hold_from_row(row: &AnyRow) -> Result<Hold> {
    let seq: i64 = row.try_get("placed_seq")?;
    let body: String = row.try_get("body")?;
    serde_json::from_str(&body).map_err(|e| LedgerError::Corrupt {
        seq,
        message: format!("hold: {e}"),
    })
}

/// The hold rows the index is derived from, for the index check.
pub(super) const HOLD_KINDS: [Kind; 2] = [Kind::HoldPlaced, Kind::HoldReleased];

#[cfg(test)]
mod tests {
    use super::super::scratch;
    use super::*;

    fn hold(case: &str) -> Hold {
        super::super::sample_hold(case)
    }

    fn release(case: &str, by: &str) -> Release {
        Release {
            case: case.into(),
            by: by.into(),
            reason: "closed".into(),
            at: crate::clock::SystemClock::read(),
            approved_by: vec![],
        }
    }

    #[tokio::test]
    async fn a_hold_is_placed_once_and_released_once() {
        let (_dir, ledger) = scratch().await;
        let placed = ledger.place_hold(&hold("C-1")).await.unwrap();
        assert!(matches!(
            ledger.place_hold(&hold("C-1")).await,
            Err(LedgerError::CaseExists(_))
        ));
        assert_eq!(ledger.active_holds().await.unwrap(), vec![hold("C-1")]);
        let row = ledger.row(placed).await.unwrap().unwrap();
        assert_eq!(
            (row.kind.as_str(), row.run_id.as_str()),
            ("hold-placed", "hold C-1")
        );
        let released = ledger.release_hold(&release("C-1", "dpo")).await.unwrap();
        let row = ledger.row(released).await.unwrap().unwrap();
        assert_eq!(row.ref_seq, Some(placed));
        assert!(ledger.active_holds().await.unwrap().is_empty());
        assert!(matches!(
            ledger.release_hold(&release("C-1", "dpo")).await,
            Err(LedgerError::AlreadyReleased(_))
        ));
        assert!(matches!(
            ledger.release_hold(&release("C-2", "dpo")).await,
            Err(LedgerError::NoSuchHold(_))
        ));
        let records = ledger.holds().await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].released.as_ref().map(|r| r.by.as_str()),
            Some("dpo")
        );
        assert!(ledger.verify_indexes().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_release_by_two_people_waits_for_another_s_approval() {
        let (_dir, ledger) = scratch().await;
        let placed = ledger.place_hold(&hold("C-1")).await.unwrap();
        let state = ledger
            .request_release(&release("C-1", "alice"), 2)
            .await
            .unwrap();
        assert_eq!(
            state,
            ReleaseState::Awaiting {
                requested_by: "alice".into(),
                more: 1
            }
        );
        assert!(matches!(
            ledger.request_release(&release("C-1", "bob"), 2).await,
            Err(LedgerError::ReleasePending { .. })
        ));
        assert!(matches!(
            ledger
                .approve_release("C-1", "Alice", crate::clock::SystemClock::read(), 2)
                .await,
            Err(LedgerError::SamePerson { .. })
        ));
        let pending = ledger.pending_releases().await.unwrap();
        assert_eq!(pending["C-1"].by, "alice");
        assert_eq!(
            ledger.holds().await.unwrap()[0]
                .release_requested
                .as_ref()
                .map(|r| r.by.as_str()),
            Some("alice")
        );
        let ReleaseState::Released(seq) = ledger
            .approve_release("C-1", "bob", crate::clock::SystemClock::read(), 2)
            .await
            .unwrap()
        else {
            panic!("not released");
        };
        let Event::HoldReleased {
            placed_seq,
            release,
        } = ledger.row(seq).await.unwrap().unwrap().event().unwrap()
        else {
            panic!("not a release row");
        };
        assert_eq!(placed_seq, placed);
        assert_eq!(
            (release.by.as_str(), release.approved_by),
            ("alice", vec!["bob".to_string()])
        );
        assert!(ledger.active_holds().await.unwrap().is_empty());
        assert!(matches!(
            ledger
                .approve_release("C-1", "carol", crate::clock::SystemClock::read(), 2)
                .await,
            Err(LedgerError::AlreadyReleased(_))
        ));
    }

    #[tokio::test]
    async fn an_approval_without_a_request_is_refused() {
        let (_dir, ledger) = scratch().await;
        ledger.place_hold(&hold("C-1")).await.unwrap();
        assert!(matches!(
            ledger
                .approve_release("C-1", "bob", crate::clock::SystemClock::read(), 2)
                .await,
            Err(LedgerError::NoReleaseRequested(_))
        ));
    }
}
