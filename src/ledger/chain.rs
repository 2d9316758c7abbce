//! The hash chain: stored rows, their hashes, appending, reading in order,
//! and verifying the whole chain. A row's hash is SHA-256 over the
//! canonical JSON of all its columns (the body parsed) and its
//! predecessor's hash, starting from [`GENESIS`]; any edited, inserted,
//! removed or reordered row breaks a link.

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::event::{Event, Kind, OutcomeBody};
use super::sql::{Placeholders, ROWS_PER_STATEMENT, select_rows, values_statement};
use super::{CertificateRecord, Ledger, LedgerError, Result, timestamp};
use crate::certificate::jcs;

/// Ledger rows read by one query when rows are streamed.
const PAGE_ROWS: i64 = 2000;

/// The hash a chain starts from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A row to append. Callers outside the ledger build these from an
/// [`Event`]; the struct stays for the code that still writes bodies of its own.
#[derive(Debug, Clone)]
pub(crate) struct NewRow {
    pub kind: Kind,
    pub run_id: String,
    pub store: Option<String>,
    pub key: Option<String>,
    pub ref_seq: Option<i64>,
    /// The body in canonical JSON.
    pub body: String,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub seq: i64,
    /// The kind as stored: text, so that a row of an unknown kind (an
    /// edit) can still be hashed and reported.
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
    pub(super) fn from_any(row: &AnyRow) -> Result<Self> {
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

    /// What the row records.
    pub fn event(&self) -> Result<Event> {
        Event::decode(&self.kind, self.ref_seq, &self.body).map_err(|message| {
            LedgerError::Corrupt {
                seq: self.seq,
                message,
            }
        })
    }

    /// The body of a `certificate` row, with its payload read as `P`
    /// (`certificate::Payload` for the code that issues certificates).
    pub fn certificate<P: DeserializeOwned>(&self) -> Result<CertificateRecord<P>> {
        if self.kind != Kind::Certificate.as_str() {
            return Err(self.corrupt(format!("a {} row is not a certificate", self.kind)));
        }
        serde_json::from_str(&self.body).map_err(|e| self.corrupt(format!("certificate: {e}")))
    }

    pub(super) fn corrupt(&self, message: String) -> LedgerError {
        LedgerError::Corrupt {
            seq: self.seq,
            message,
        }
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
        fn member(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
            jcs::write_string(name, out);
            out.push(b':');
            match value {
                Some(v) => jcs::write_string(v, out),
                None => out.extend_from_slice(b"null"),
            }
        }
        let mut out = Vec::with_capacity(self.body.len() + 256);
        out.push(b'{');
        // Members in RFC 8785 order: at, body, key, kind, prev, ref, run_id, seq, store.
        member(&mut out, "at", Some(&self.at));
        out.extend_from_slice(b",\"body\":");
        out.extend_from_slice(self.body.as_bytes());
        out.push(b',');
        member(&mut out, "key", self.key.as_deref());
        out.push(b',');
        member(&mut out, "kind", Some(&self.kind));
        out.push(b',');
        member(&mut out, "prev", Some(&self.prev_hash));
        out.extend_from_slice(b",\"ref\":");
        match self.ref_seq {
            Some(r) => out.extend_from_slice(r.to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b',');
        member(&mut out, "run_id", Some(&self.run_id));
        out.extend_from_slice(format!(",\"seq\":{},", self.seq).as_bytes());
        member(&mut out, "store", self.store.as_deref());
        out.push(b'}');
        hex::encode(Sha256::digest(&out))
    }

    pub(super) fn body_json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).map_err(|e| self.corrupt(format!("body is not JSON: {e}")))
    }
}

/// What [`Ledger::verify`] found.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub rows: u64,
    pub head: String,
    pub problems: Vec<String>,
}

/// Verification stops listing problems after this many.
const MAX_PROBLEMS: usize = 100;

impl Ledger {
    /// Records one event that has no index of its own (a run's start and
    /// end, a shard's plan) and returns its sequence number. Intents,
    /// outcomes, holds, erasures and certificates go through their own
    /// methods, which keep their indexes in the same transaction; they are
    /// refused here ([`LedgerError::Indexed`]).
    pub async fn record(&self, run_id: &str, event: &Event) -> Result<i64> {
        match event {
            Event::RunStarted(_) | Event::RunFinished(_) | Event::ShardPlanned(_) => {}
            other => return Err(LedgerError::Indexed(other.kind())),
        }
        let row = event.to_row(run_id).map_err(|e| LedgerError::Corrupt {
            seq: 0,
            message: e.to_string(),
        })?;
        Ok(self.append(vec![row]).await?[0])
    }

    /// Appends rows in one transaction and returns their sequence numbers.
    pub(super) async fn append(&self, rows: Vec<NewRow>) -> Result<Vec<i64>> {
        let mut tx = self.begin().await?;
        let seqs = self.append_in(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(seqs)
    }

    /// Appends an event inside an open transaction (that also updates an index).
    pub(super) async fn append_event_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        run_id: &str,
        event: &Event,
    ) -> Result<i64> {
        let row = event.to_row(run_id).map_err(|e| LedgerError::Corrupt {
            seq: 0,
            message: e.to_string(),
        })?;
        Ok(self.append_in(tx, vec![row]).await?[0])
    }

    /// Appends inside an open transaction: the hash chain is computed row by
    /// row, and the rows are written many to a statement (a statement per row
    /// would cost a round trip to the database worker each).
    pub(super) async fn append_in(
        &self,
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
            let body = row.body;
            let mut stored = LedgerRow {
                seq,
                kind: row.kind.as_str().to_string(),
                run_id: row.run_id,
                at: timestamp(self.clock.now()),
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
        Self::insert_rows(tx, stored_rows).await?;
        Ok(seqs)
    }

    async fn insert_rows(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        rows: Vec<LedgerRow>,
    ) -> Result<()> {
        let style = Placeholders::of(tx);
        let mut rest = rows.into_iter().peekable();
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
        Ok(())
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
        let row = sqlx::query(select_rows!("WHERE seq = $1"))
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(LedgerRow::from_any).transpose()
    }

    /// Every row in order, streamed.
    pub fn rows(&self) -> BoxStream<'_, Result<LedgerRow>> {
        self.paged(None, 1, i64::MAX)
    }

    /// Rows of one kind with `from <= seq <= to`, streamed in order.
    pub fn rows_of_kind(&self, kind: Kind, from: i64, to: i64) -> BoxStream<'_, Result<LedgerRow>> {
        self.paged(Some(kind), from, to)
    }

    /// Rows with `from <= seq <= to` (of one kind, if given), read
    /// [`PAGE_ROWS`] at a time in order and streamed. A page is one query:
    /// a query streamed row by row hands each row over from SQLite's worker
    /// thread on its own, a thread woken per row.
    fn paged(&self, kind: Option<Kind>, from: i64, to: i64) -> BoxStream<'_, Result<LedgerRow>> {
        futures::stream::try_unfold(Some(from), move |next| async move {
            let Some(from) = next.filter(|from| *from <= to) else {
                return Ok::<_, LedgerError>(None);
            };
            let page = match kind {
                Some(kind) => {
                    sqlx::query(select_rows!(
                        "WHERE kind = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4"
                    ))
                    .bind(kind.as_str())
                    .bind(from)
                    .bind(to)
                    .bind(PAGE_ROWS)
                    .fetch_all(&self.pool)
                    .await?
                }
                None => {
                    sqlx::query(select_rows!(
                        "WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3"
                    ))
                    .bind(from)
                    .bind(to)
                    .bind(PAGE_ROWS)
                    .fetch_all(&self.pool)
                    .await?
                }
            };
            let rows = page
                .iter()
                .map(LedgerRow::from_any)
                .collect::<Result<Vec<_>>>()?;
            let next = match rows.last() {
                Some(last) if rows.len() as i64 == PAGE_ROWS => last.seq.checked_add(1),
                _ => None,
            };
            let rows = rows.into_iter().map(Ok::<_, LedgerError>);
            Ok(Some((futures::stream::iter(rows), next)))
        })
        .try_flatten()
        .boxed()
    }

    /// Checks the whole chain: contiguous sequence numbers from 1, each row's
    /// predecessor hash and its own hash; then the pending-intent index
    /// against the intents the chain leaves open.
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
            track_open_intents(&row, &mut open, &mut report.problems);
            expected_seq = row.seq + 1;
            prev = row.hash.clone();
            report.rows += 1;
            report.head = row.hash;
            if report.problems.len() >= MAX_PROBLEMS {
                report.problems.push("more problems not listed".into());
                break;
            }
        }
        drop(rows);
        if report.problems.len() < MAX_PROBLEMS {
            report
                .problems
                .extend(self.check_pending_index(&open).await?);
        }
        Ok(report)
    }

    /// Whether a row of the chain is still the one that was written: its
    /// content matches its hash, and the row after it (if any) links to that
    /// hash, so that an edit of the row and its hash together shows too.
    pub(super) async fn anchored(&self, row: &LedgerRow) -> Result<Option<String>> {
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
}

/// The intents the chain leaves open, to check the pending index against:
/// an intent opens, and an outcome that does not leave it pending closes it.
fn track_open_intents(
    row: &LedgerRow,
    open: &mut std::collections::BTreeSet<i64>,
    problems: &mut Vec<String>,
) {
    match Kind::parse(&row.kind) {
        Some(Kind::Intent) => {
            open.insert(row.seq);
        }
        Some(Kind::Outcome) => match serde_json::from_str::<OutcomeBody>(&row.body) {
            Ok(o) if !crate::execute::stays_pending(&o.intent, &o.outcome) => {
                open.remove(&o.outcome.intent);
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("row {}: not an outcome: {e}", row.seq)),
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RunStarted, ShardPlan, scratch};
    use super::*;

    fn plan(shard: u32) -> Event {
        Event::ShardPlanned(ShardPlan {
            pass: "p".into(),
            shard,
            of: 2,
            stores: Default::default(),
        })
    }

    #[tokio::test]
    async fn appended_rows_chain_from_genesis_and_verify() {
        let (_dir, ledger) = scratch().await;
        assert_eq!(ledger.head().await.unwrap(), (0, GENESIS.to_string()));
        let a = ledger.record("r", &plan(0)).await.unwrap();
        let b = ledger.record("r", &plan(1)).await.unwrap();
        assert_eq!((a, b), (1, 2));
        let first = ledger.row(1).await.unwrap().unwrap();
        let second = ledger.row(2).await.unwrap().unwrap();
        assert_eq!(first.prev_hash, GENESIS);
        assert_eq!(second.prev_hash, first.hash);
        assert_eq!(first.compute_hash().as_deref(), Some(first.hash.as_str()));
        assert_eq!(second.event().unwrap(), plan(1));
        let report = ledger.verify().await.unwrap();
        assert_eq!(report.rows, 2);
        assert_eq!(report.head, second.hash);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(ledger.head().await.unwrap(), (2, second.hash));
    }

    #[tokio::test]
    async fn an_edited_body_breaks_its_hash() {
        let (_dir, ledger) = scratch().await;
        ledger.record("r", &plan(0)).await.unwrap();
        ledger.record("r", &plan(1)).await.unwrap();
        sqlx::query("UPDATE ledger SET body = REPLACE(body, '\"of\":2', '\"of\":3') WHERE seq = 1")
            .execute(&ledger.pool)
            .await
            .unwrap();
        let report = ledger.verify().await.unwrap();
        assert_eq!(
            report.problems,
            vec!["row 1: content does not match its hash (the row was edited)"]
        );
        let row = ledger.row(1).await.unwrap().unwrap();
        assert!(ledger.anchored(&row).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_removed_row_shows_as_a_gap_and_a_broken_link() {
        let (_dir, ledger) = scratch().await;
        for shard in 0..3 {
            ledger.record("r", &plan(shard)).await.unwrap();
        }
        sqlx::query("DELETE FROM ledger WHERE seq = 2")
            .execute(&ledger.pool)
            .await
            .unwrap();
        let report = ledger.verify().await.unwrap();
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(report.problems[0].contains("expected sequence number 2"));
        assert!(report.problems[1].contains("does not link to the row before it"));
    }

    #[test]
    fn a_body_in_another_spelling_has_no_hash() {
        let mut row = LedgerRow {
            seq: 1,
            kind: "shard-planned".into(),
            run_id: "r".into(),
            at: "2026-12-01T09:18:28.506Z".into(),
            store: None,
            key: Some("k".into()),
            ref_seq: Some(7),
            body: r#"{"a":1,"b":[true,null]}"#.into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        // The direct hash and the parsed one agree, whatever the columns hold.
        assert_eq!(row.compute_hash(), Some(row.hash_of_canonical()));
        row.body = r#"{"b":[true,null],"a":1}"#.into();
        assert_eq!(row.compute_hash(), None);
        row.body = "not json".into();
        assert_eq!(row.compute_hash(), None);
        assert!(row.body_json().is_err());
    }

    #[tokio::test]
    async fn record_refuses_events_that_keep_an_index() {
        let (_dir, ledger) = scratch().await;
        let erasure = Event::ErasureRequested(super::super::ErasureRequest {
            request: "DSR-1".into(),
            subject_sha256: "00".into(),
            at: crate::clock::SystemClock::read(),
        });
        assert!(matches!(
            ledger.record("r", &erasure).await,
            Err(LedgerError::Indexed(Kind::ErasureRequested))
        ));
        assert_eq!(ledger.head().await.unwrap().0, 0);
    }

    #[tokio::test]
    async fn rows_of_one_kind_are_read_within_a_range() {
        let (_dir, ledger) = scratch().await;
        let started = Event::RunStarted(RunStarted {
            started_at: crate::clock::SystemClock::read(),
            purpose: super::super::Purpose::Retention,
            approved_plan_sha256: None,
            shard: None,
            tool: super::super::Tool::lethe(),
            policies: vec![],
            stores: vec![],
        });
        ledger.record("r", &started).await.unwrap();
        ledger.record("r", &plan(0)).await.unwrap();
        ledger.record("r", &plan(1)).await.unwrap();
        let seqs: Vec<i64> = ledger
            .rows_of_kind(Kind::ShardPlanned, 1, 2)
            .map(|r| r.unwrap().seq)
            .collect()
            .await;
        assert_eq!(seqs, vec![2]);
        let all: Vec<i64> = ledger.rows().map(|r| r.unwrap().seq).collect().await;
        assert_eq!(all, vec![1, 2, 3]);
        assert!(
            ledger
                .row(1)
                .await
                .unwrap()
                .unwrap()
                .certificate::<Value>()
                .is_err()
        );
    }
}
