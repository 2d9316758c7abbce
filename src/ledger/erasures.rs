//! Erasure requests: each is an `erasure-requested` row and an entry of the
//! `erasure` index (request -> SHA-256 of the subject), from which later
//! runs know which subjects' recordings to erase if they appear again. A
//! request id names one subject for good.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::event::{ErasureRequest, Event};
use super::{Ledger, LedgerError, Result};

impl Ledger {
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
        let event = Event::ErasureRequested(ErasureRequest {
            request: request.to_string(),
            subject_sha256: subject_sha256.to_string(),
            at,
        });
        let seq = self.append_event_in(&mut tx, run_id, &event).await?;
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
}

#[cfg(test)]
mod tests {
    use super::super::scratch;
    use super::*;

    #[tokio::test]
    async fn a_request_names_one_subject_and_may_be_repeated_for_it() {
        let (_dir, ledger) = scratch().await;
        let first = ledger
            .record_erasure("r1", "DSR-1", "aa", crate::clock::SystemClock::read())
            .await
            .unwrap();
        let again = ledger
            .record_erasure("r2", "DSR-1", "aa", crate::clock::SystemClock::read())
            .await
            .unwrap();
        assert_eq!((first, again), (1, 2));
        assert!(matches!(
            ledger
                .record_erasure("r3", "DSR-1", "bb", crate::clock::SystemClock::read())
                .await,
            Err(LedgerError::RequestReused(_))
        ));
        ledger
            .record_erasure("r3", "DSR-2", "aa", crate::clock::SystemClock::read())
            .await
            .unwrap();
        // The first request for a subject is the one remembered.
        let erasures = ledger.erasures().await.unwrap();
        assert_eq!(erasures.len(), 1);
        assert_eq!(erasures["aa"], "DSR-1");
        let row = ledger.row(1).await.unwrap().unwrap();
        assert_eq!(
            (row.kind.as_str(), row.run_id.as_str()),
            ("erasure-requested", "r1")
        );
        assert!(matches!(row.event().unwrap(), Event::ErasureRequested(e) if e.request == "DSR-1"));
        assert!(ledger.verify_indexes().await.unwrap().is_empty());
    }
}
