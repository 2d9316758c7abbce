//! The executor's journal: intents recorded before a delete is sent and
//! outcomes after, with the `pending_intent` index of intents that have no
//! final outcome yet (what the next run's recovery completes). The intent
//! transaction also checks the lease (fencing) and the holds in force, so
//! that a hold committed before it protects the recordings it covers.

use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::Row;

use super::event::{Event, Kind, OutcomeBody};
use super::sql::{Placeholders, SEQS_PER_STATEMENT, values_statement};
use super::{Lease, Ledger, LedgerError, LedgerRow, Result};
use crate::execute::{Intent, IntentGroup, Journal, JournalError, Outcome, Pending, Recorded};
use crate::hold;

/// A journal that records the intents and outcomes of one run.
pub struct RunJournal<'a> {
    ledger: &'a Ledger,
    run_id: String,
    lease: Option<Lease>,
}

impl Ledger {
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
                    serde_json::from_str(&row.body).map_err(|e| row.corrupt(e.to_string()))?;
                Ok(Pending {
                    seq: row.seq,
                    run_id: row.run_id,
                    intent,
                })
            })
            .collect()
    }

    /// The other runs whose intents `run_id` completed in rows
    /// `from..=to` (the interrupted runs it recovered), by run id.
    pub async fn completed_for(&self, run_id: &str, from: i64, to: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT i.run_id AS run_id FROM ledger o JOIN ledger i ON i.seq = o.ref_seq \
             WHERE o.kind = 'outcome' AND o.run_id = $1 AND o.seq >= $2 AND o.seq <= $3 AND i.run_id <> $1 \
             ORDER BY i.run_id",
        )
        .bind(run_id.to_string())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("run_id")?))
            .collect()
    }

    /// Outcomes recorded with `from <= seq <= to`, streamed in order.
    pub fn outcomes(&self, from: i64, to: i64) -> BoxStream<'_, Result<(LedgerRow, OutcomeBody)>> {
        self.rows_of_kind(Kind::Outcome, from, to)
            .map(|row| {
                let row = row?;
                let body: OutcomeBody =
                    serde_json::from_str(&row.body).map_err(|e| row.corrupt(e.to_string()))?;
                Ok((row, body))
            })
            .boxed()
    }

    /// The pending index is what the next run's recovery completes: an
    /// intent removed from it would leave its object gone and uncertified.
    /// `open` is the set of intents the chain leaves open.
    pub(super) async fn check_pending_index(
        &self,
        open: &std::collections::BTreeSet<i64>,
    ) -> Result<Vec<String>> {
        let index: std::collections::BTreeSet<i64> = sqlx::query("SELECT seq FROM pending_intent")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>("seq"))
            .collect::<Result<_, _>>()?;
        let mut problems = Vec::new();
        for seq in open.difference(&index).take(20) {
            problems.push(format!(
                "row {seq}: an intent without a final outcome is missing from the pending-intent index (the next run would never complete it)"
            ));
        }
        for seq in index.difference(open).take(20) {
            problems.push(format!(
                "the pending-intent index lists {seq}, which the chain does not show as an open intent"
            ));
        }
        Ok(problems)
    }
}

/// Runs `DELETE FROM pending_intent WHERE seq IN (...)` or an insert of
/// `seqs`, many to a statement.
async fn index_seqs(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    seqs: &[i64],
    insert: bool,
) -> Result<()> {
    let style = Placeholders::of(tx);
    for chunk in seqs.chunks(SEQS_PER_STATEMENT) {
        let sql = if insert {
            values_statement(
                "INSERT INTO pending_intent (seq) VALUES ",
                chunk.len(),
                1,
                style,
            )
        } else {
            format!(
                "DELETE FROM pending_intent WHERE seq IN ({})",
                style.list(1, chunk.len())
            )
        };
        let full = chunk.len() == SEQS_PER_STATEMENT;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(full);
        for seq in chunk {
            q = q.bind(*seq);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Which of `seqs` are in the pending-intent index, read inside `tx`.
async fn pending_among(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    seqs: impl Iterator<Item = i64>,
) -> Result<std::collections::HashSet<i64>> {
    let seqs: Vec<i64> = seqs.collect();
    let style = Placeholders::of(tx);
    let mut open = std::collections::HashSet::with_capacity(seqs.len());
    for chunk in seqs.chunks(SEQS_PER_STATEMENT) {
        let sql = format!(
            "SELECT seq FROM pending_intent WHERE seq IN ({})",
            style.list(1, chunk.len())
        );
        let full = chunk.len() == SEQS_PER_STATEMENT;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(full);
        for seq in chunk {
            q = q.bind(*seq);
        }
        for row in q.fetch_all(&mut **tx).await? {
            open.insert(row.try_get::<i64, _>("seq")?);
        }
    }
    Ok(open)
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
                        rows.push(Event::Intent(i.clone()).to_row(&self.run_id)?);
                    }
                }
            }
        }
        let seqs = self.ledger.append_in(&mut tx, rows).await?;
        index_seqs(&mut tx, &seqs, true).await?;
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
        let mut tx = self.ledger.begin().await?;
        // Only an intent that is still pending takes an outcome, checked in
        // the transaction that records it. A worker cut off from the
        // database past its lease finds, when it is back, that the run which
        // took the lease over has already completed its intents (recovery):
        // recording its own outcomes too would record those objects deleted
        // twice, and certify them twice.
        let open = pending_among(&mut tx, outcomes.iter().map(|(_, o)| o.intent)).await?;
        let (outcomes, done): (Vec<_>, Vec<_>) =
            outcomes.iter().partition(|(_, o)| open.contains(&o.intent));
        if !done.is_empty() {
            tracing::warn!(
                count = done.len(),
                sample = %done.first().map(|(i, _)| i.key.as_str()).unwrap_or_default(),
                "outcomes not recorded: another run already completed these intents"
            );
        }
        if outcomes.is_empty() {
            tx.rollback().await.map_err(LedgerError::from)?;
            return Ok(());
        }
        let rows = outcomes
            .iter()
            .map(|(i, o)| {
                Event::Outcome(OutcomeBody {
                    intent: i.clone(),
                    outcome: o.clone(),
                })
                .to_row(&self.run_id)
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        // Some outcomes leave the intent pending: the next run's recovery
        // checks the object again and records what it finds.
        let closed: Vec<i64> = outcomes
            .iter()
            .filter(|(i, o)| !crate::execute::stays_pending(i, o))
            .map(|(_, o)| o.intent)
            .collect();
        self.ledger.append_in(&mut tx, rows).await?;
        index_seqs(&mut tx, &closed, false).await?;
        tx.commit().await.map_err(LedgerError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::scratch;
    use super::*;
    use crate::execute::{Role, Status};

    fn intent(key: &str) -> Intent {
        let t = crate::clock::SystemClock::read() - Duration::days(1000);
        Intent {
            store: "recordings".into(),
            key: key.into(),
            role: Role::Recording,
            recording: key.into(),
            size: 5,
            e_tag: None,
            purposes: vec!["quality".into()],
            recorded_at: t,
            expires_at: t,
            rules: vec!["r".into()],
            purpose: "quality".into(),
            basis: "b".into(),
        }
    }

    fn group(key: &str) -> IntentGroup {
        IntentGroup {
            target: None,
            intents: vec![intent(key)],
        }
    }

    fn outcome(seq: i64, result: Status) -> Outcome {
        Outcome {
            intent: seq,
            result,
            at: crate::clock::SystemClock::read(),
            detail: None,
            verified_by: None,
        }
    }

    #[tokio::test]
    async fn intents_stay_pending_until_a_final_outcome() {
        let (_dir, ledger) = scratch().await;
        let journal = ledger.journal("r");
        let recorded = journal
            .record_intents(&[group("a.wav"), group("b.wav")])
            .await
            .unwrap();
        assert!(
            matches!(&recorded[..], [Recorded::Intents(a), Recorded::Intents(b)] if a == &[1] && b == &[2])
        );
        assert_eq!(ledger.pending().await.unwrap().len(), 2);
        journal
            .record_outcomes(&[
                (intent("a.wav"), outcome(1, Status::Deleted)),
                (intent("b.wav"), outcome(2, Status::Unconfirmed)),
            ])
            .await
            .unwrap();
        // An unconfirmed deletion is checked again by the next run.
        let pending = ledger.pending().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].seq, pending[0].intent.key.as_str()),
            (2, "b.wav")
        );
        let outcomes: Vec<_> = ledger
            .outcomes(1, i64::MAX)
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(outcomes.len(), 2);
        assert_eq!(outcomes[0].0.ref_seq, Some(1));
        assert_eq!(outcomes[0].0.key.as_deref(), Some("a.wav"));
        assert_eq!(outcomes[1].1.outcome.result, Status::Unconfirmed);
        assert!(ledger.verify().await.unwrap().problems.is_empty());
    }

    #[tokio::test]
    async fn an_intent_removed_from_the_pending_index_shows_in_verify() {
        let (_dir, ledger) = scratch().await;
        ledger
            .journal("r")
            .record_intents(&[group("a.wav")])
            .await
            .unwrap();
        sqlx::query("DELETE FROM pending_intent")
            .execute(&ledger.pool)
            .await
            .unwrap();
        let problems = ledger.verify().await.unwrap().problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("row 1: an intent without a final outcome"));
    }
}
