//! Certificate rows: a certificate is recorded in the ledger before its
//! files are written, and only against the last certificate on record, so
//! that concurrent shards keep one chain of certificates. The payload is
//! opaque here (the ledger comes before the certificate in the pipeline);
//! only the range of rows it covers is read, to tell whether deletions on
//! record are not yet certified.

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

    #[tokio::test]
    async fn outcomes_after_the_last_certificate_are_uncertified() {
        let (_dir, ledger) = scratch().await;
        assert!(!ledger.has_uncertified().await.unwrap());
        let t = crate::clock::SystemClock::read();
        let intent = Intent {
            store: "s".into(),
            key: "k".into(),
            role: Role::Recording,
            recording: "k".into(),
            size: 1,
            e_tag: None,
            purposes: vec![],
            recorded_at: t,
            expires_at: t,
            rules: vec![],
            purpose: "p".into(),
            basis: "b".into(),
        };
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
