//! Certificate rows: a certificate is recorded in the ledger before its
//! files are written, and only against the last certificate on record, so
//! that concurrent shards keep one chain of certificates. The payload is
//! opaque here (the ledger comes before the certificate in the pipeline);
//! only what it covers is read (its range of rows, and from format 2 the
//! runs it certifies), to tell which outcomes on record are not yet
//! certified.
//!
//! A format 1 certificate certifies every outcome of its range of rows. A
//! format 2 certificate certifies, in its range, the outcomes of the runs
//! it lists that no earlier certificate certified; a concurrent shard's
//! outcomes in the same range are left to that shard's own certificate,
//! and `next_first_seq` says where the next certificate's range begins.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;

use super::event::{CertificateRecord, Event};
use super::sql::select_rows;
use super::{Ledger, LedgerError, LedgerRow, Result};

impl Ledger {
    /// Appends a certificate row if the last certificate is still the one
    /// (by ledger seq) the certificate was computed against; `Ok(None)` if
    /// another certificate was issued meanwhile (a concurrent shard), so the
    /// caller computes it again.
    pub async fn append_certificate<P: Serialize>(
        &self,
        run_id: &str,
        record: &CertificateRecord<P>,
        previous: Option<i64>,
    ) -> Result<Option<i64>> {
        let corrupt = |e: serde_json::Error| LedgerError::Corrupt {
            seq: 0,
            message: e.to_string(),
        };
        // The payload is held as JSON from here on: the row's body is its
        // canonical form, as `Event::Certificate` writes it.
        let record = CertificateRecord {
            sequence: record.sequence,
            certificate_file: record.certificate_file.clone(),
            certificate_sha256: record.certificate_sha256.clone(),
            manifest_file: record.manifest_file.clone(),
            manifest_sha256: record.manifest_sha256.clone(),
            payload: serde_json::to_value(&record.payload).map_err(corrupt)?,
        };
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
        let seq = self
            .append_event_in(&mut tx, run_id, &Event::Certificate(record))
            .await?;
        tx.commit().await?;
        Ok(Some(seq))
    }

    /// The most recent certificate row.
    pub async fn last_certificate(&self) -> Result<Option<LedgerRow>> {
        let sql = select_rows!("WHERE kind = 'certificate' ORDER BY seq DESC LIMIT 1");
        let row = sqlx::query(sql).fetch_optional(&self.pool).await?;
        row.as_ref().map(LedgerRow::from_any).transpose()
    }

    /// Whether deletions are on record that no certificate covers yet
    /// (an interrupted run, or one whose certificate failed): intents
    /// without outcomes, or outcomes no certificate certifies.
    pub async fn has_uncertified(&self) -> Result<bool> {
        if !self.pending().await?.is_empty() {
            return Ok(true);
        }
        let coverage = self.coverage(i64::MAX).await?;
        let (head, _) = self.head().await?;
        Ok(!self.uncertified_runs(&coverage, head).await?.is_empty())
    }

    /// What the certificates recorded before ledger row `before` certify
    /// (`i64::MAX`: all of them).
    pub async fn coverage(&self, before: i64) -> Result<Coverage> {
        let last = sqlx::query(select_rows!(
            "WHERE kind = 'certificate' AND seq < $1 ORDER BY seq DESC LIMIT 1"
        ))
        .bind(before)
        .fetch_optional(&self.pool)
        .await?;
        let Some(last) = last.as_ref().map(LedgerRow::from_any).transpose()? else {
            return Ok(Coverage::default());
        };
        let from = Covered::of(&last)?.next_first_seq;
        let mut coverage = Coverage {
            from,
            ..Coverage::default()
        };
        // The certificates recorded since `from` certify some of the
        // outcomes after it (the last one among them).
        let rows: Vec<LedgerRow> = sqlx::query(select_rows!(
            "WHERE kind = 'certificate' AND seq >= $1 AND seq < $2 ORDER BY seq"
        ))
        .bind(from)
        .bind(before)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(LedgerRow::from_any)
        .collect::<Result<_>>()?;
        for row in &rows {
            let covered = Covered::of(row)?;
            match covered.runs {
                None => coverage.all_up_to = coverage.all_up_to.max(covered.last_seq),
                Some(runs) => {
                    for run in runs {
                        let up_to = coverage.runs.entry(run).or_insert(0);
                        *up_to = (*up_to).max(covered.last_seq);
                    }
                }
            }
        }
        Ok(coverage)
    }

    /// The runs with outcomes in rows `coverage.from..=to` that no
    /// certificate certifies, each with the first such row, in run order.
    pub async fn uncertified_runs(
        &self,
        coverage: &Coverage,
        to: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT run_id, MAX(seq) AS last FROM ledger WHERE kind = 'outcome' AND seq >= $1 AND seq <= $2 GROUP BY run_id ORDER BY run_id",
        )
        .bind(coverage.from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut runs = Vec::new();
        for row in &rows {
            let (run_id, last): (String, i64) = (row.try_get("run_id")?, row.try_get("last")?);
            if coverage.covers(&run_id, last) {
                continue;
            }
            let first = sqlx::query(
                "SELECT MIN(seq) AS first FROM ledger WHERE kind = 'outcome' AND run_id = $1 AND seq > $2 AND seq <= $3",
            )
            .bind(run_id.clone())
            .bind(coverage.up_to(&run_id))
            .bind(to)
            .fetch_one(&self.pool)
            .await?;
            runs.push((run_id, first.try_get::<i64, _>("first")?));
        }
        Ok(runs)
    }
}

/// Which outcomes the certificates on record certify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Every outcome before this row is certified.
    pub from: i64,
    /// Every outcome up to this row is certified, whatever its run (a
    /// format 1 certificate's range).
    all_up_to: i64,
    /// Per run: its outcomes up to this row are certified.
    runs: HashMap<String, i64>,
}

impl Default for Coverage {
    fn default() -> Self {
        Self {
            from: 1,
            all_up_to: 0,
            runs: HashMap::new(),
        }
    }
}

impl Coverage {
    /// Whether the outcome of `run_id` at row `seq` is certified.
    pub fn covers(&self, run_id: &str, seq: i64) -> bool {
        seq <= self.up_to(run_id)
    }

    /// Up to which row the outcomes of `run_id` are certified.
    fn up_to(&self, run_id: &str) -> i64 {
        let run = self.runs.get(run_id).copied().unwrap_or(0);
        (self.from - 1).max(self.all_up_to).max(run)
    }
}

/// What one certificate row covers, read from its payload.
struct Covered {
    last_seq: i64,
    /// `None` for a format 1 certificate: every run of its range.
    runs: Option<Vec<String>>,
    next_first_seq: i64,
}

impl Covered {
    fn of(row: &LedgerRow) -> Result<Self> {
        let body = row.body_json()?;
        let anchor = &body["payload"]["ledger"];
        let last_seq = anchor["last_seq"]
            .as_i64()
            .ok_or_else(|| row.corrupt("a certificate without ledger.last_seq".into()))?;
        let runs = anchor.get("runs").map(|runs| {
            runs.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        });
        let next_first_seq = anchor["next_first_seq"].as_i64().unwrap_or(last_seq + 1);
        Ok(Self {
            last_seq,
            runs,
            next_first_seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::scratch;
    use super::*;
    use crate::execute::{Intent, IntentGroup, Journal, Outcome, Role, Status};

    fn record(sequence: u64, last_seq: i64) -> CertificateRecord {
        CertificateRecord {
            sequence,
            certificate_file: format!("lethe-cert-{sequence:06}.json"),
            certificate_sha256: "aa".into(),
            manifest_file: format!("lethe-cert-{sequence:06}.manifest.jsonl"),
            manifest_sha256: "bb".into(),
            payload: json!({"ledger": {"first_seq": 1, "last_seq": last_seq, "last_row_sha256": "cc"}}),
        }
    }

    #[tokio::test]
    async fn a_certificate_is_appended_only_against_the_last_one() {
        let (_dir, ledger) = scratch().await;
        let first = ledger
            .append_certificate("r", &record(1, 0), None)
            .await
            .unwrap();
        assert_eq!(first, Some(1));
        // Computed against no certificate, but one was issued meanwhile.
        assert_eq!(
            ledger
                .append_certificate("r", &record(2, 0), None)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            ledger
                .append_certificate("r", &record(2, 1), Some(1))
                .await
                .unwrap(),
            Some(2)
        );
        let last = ledger.last_certificate().await.unwrap().unwrap();
        assert_eq!(last.seq, 2);
        let read: CertificateRecord<Value> = last.certificate().unwrap();
        assert_eq!(read, record(2, 1));
        assert_eq!(last.event().unwrap(), Event::Certificate(record(2, 1)));
    }

    fn scoped(
        sequence: u64,
        last_seq: i64,
        runs: &[&str],
        next_first_seq: i64,
    ) -> CertificateRecord {
        let mut r = record(sequence, last_seq);
        r.payload["format"] = json!(2);
        r.payload["ledger"]["runs"] = json!(runs);
        r.payload["ledger"]["next_first_seq"] = json!(next_first_seq);
        r
    }

    fn intent(key: &str, t: chrono::DateTime<chrono::Utc>) -> Intent {
        Intent {
            store: "s".into(),
            key: key.into(),
            role: Role::Recording,
            recording: key.into(),
            size: 1,
            e_tag: None,
            purposes: vec![],
            recorded_at: t,
            expires_at: t,
            rules: vec![],
            purpose: "p".into(),
            basis: "b".into(),
        }
    }

    /// Records one deleted object for `run`; returns its outcome's row.
    async fn deletion(ledger: &Ledger, run: &str, key: &str) -> i64 {
        let t = crate::clock::SystemClock::read();
        let intent = intent(key, t);
        let journal = ledger.journal(run);
        let recorded = journal
            .record_intents(&[IntentGroup {
                target: None,
                intents: vec![intent.clone()],
            }])
            .await
            .unwrap();
        let crate::execute::Recorded::Intents(seqs) = &recorded[0] else {
            panic!("not recorded: {recorded:?}")
        };
        let outcome = Outcome {
            intent: seqs[0],
            result: Status::Deleted,
            at: t,
            detail: None,
            verified_by: None,
        };
        journal.record_outcomes(&[(intent, outcome)]).await.unwrap();
        ledger.head().await.unwrap().0
    }

    #[tokio::test]
    async fn interleaved_runs_are_certified_each_by_its_own_certificate() {
        let (_dir, ledger) = scratch().await;
        // Two shards delete at once: their outcomes interleave.
        let a1 = deletion(&ledger, "A", "a1").await;
        let b1 = deletion(&ledger, "B", "b1").await;
        let a2 = deletion(&ledger, "A", "a2").await;
        let cov = ledger.coverage(i64::MAX).await.unwrap();
        assert_eq!(
            ledger.uncertified_runs(&cov, a2).await.unwrap(),
            vec![("A".to_string(), a1), ("B".to_string(), b1)]
        );
        // A certifies its own; B's outcomes are left from b1 on.
        ledger
            .append_certificate("A", &scoped(1, a2, &["A"], b1), None)
            .await
            .unwrap();
        let b2 = deletion(&ledger, "B", "b2").await;
        let cov = ledger.coverage(i64::MAX).await.unwrap();
        assert_eq!(cov.from, b1);
        assert!(cov.covers("A", a2) && !cov.covers("B", b1) && !cov.covers("B", b2));
        assert_eq!(
            ledger.uncertified_runs(&cov, b2).await.unwrap(),
            vec![("B".to_string(), b1)]
        );
        assert!(ledger.has_uncertified().await.unwrap());
        let last_a = ledger.last_certificate().await.unwrap().unwrap().seq;
        ledger
            .append_certificate("B", &scoped(2, b2, &["B"], b2 + 1), Some(last_a))
            .await
            .unwrap();
        assert!(!ledger.has_uncertified().await.unwrap());
        // The coverage before B's certificate is what B's was computed against.
        let last_b = ledger.last_certificate().await.unwrap().unwrap().seq;
        assert_eq!(ledger.coverage(last_b).await.unwrap(), cov);
        // A format 1 certificate covers every run of its range.
        let c = deletion(&ledger, "C", "c1").await;
        ledger
            .append_certificate("C", &record(3, c), Some(last_b))
            .await
            .unwrap();
        let cov = ledger.coverage(i64::MAX).await.unwrap();
        assert!(cov.covers("C", c) && cov.covers("Z", c));
        assert!(!ledger.has_uncertified().await.unwrap());
    }

    #[tokio::test]
    async fn outcomes_after_the_last_certificate_are_uncertified() {
        let (_dir, ledger) = scratch().await;
        assert!(!ledger.has_uncertified().await.unwrap());
        let t = crate::clock::SystemClock::read();
        let intent = intent("k", t);
        let journal = ledger.journal("r");
        journal
            .record_intents(&[IntentGroup {
                target: None,
                intents: vec![intent.clone()],
            }])
            .await
            .unwrap();
        // An intent without an outcome is uncertified.
        assert!(ledger.has_uncertified().await.unwrap());
        let outcome = Outcome {
            intent: 1,
            result: Status::Deleted,
            at: t,
            detail: None,
            verified_by: None,
        };
        journal.record_outcomes(&[(intent, outcome)]).await.unwrap();
        assert!(ledger.has_uncertified().await.unwrap());
        ledger
            .append_certificate("r", &record(1, 2), None)
            .await
            .unwrap();
        assert!(!ledger.has_uncertified().await.unwrap());
    }
}
