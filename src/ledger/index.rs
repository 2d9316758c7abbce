//! The check of a derived index against the chain. The `hold` and `erasure`
//! tables are derived state that a run trusts before it deletes (a hold
//! removed from its index would let a run delete held recordings; an erased
//! subject removed from its index would let its recordings come back), so
//! `ledger verify` and every pass rebuild each index from the chain's rows
//! and compare. One generic check serves both; an [`Index`] says how an
//! index is read and how the chain's rows imply it. (The pending-intent
//! index is checked with the chain itself, in [`Ledger::verify`].)

use std::collections::BTreeMap;

use futures::StreamExt;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::event::{Event, Kind};
use super::{Ledger, LedgerRow, Result};

/// How one derived index is checked.
pub(super) struct Index<V> {
    /// How a message names one entry ("hold", "erasure request").
    pub entry: &'static str,
    /// How a message names the index ("hold index").
    pub name: &'static str,
    /// The kinds of the rows the index is derived from.
    pub kinds: &'static [Kind],
    /// The query that reads the whole index.
    pub select: &'static str,
    /// One row of the index, as its key and value.
    pub read: fn(&AnyRow) -> Result<(String, V)>,
    /// Applies one chain row to the index it implies; `Some` is a problem
    /// (a row the index cannot follow).
    pub apply: fn(&mut BTreeMap<String, V>, &LedgerRow, Event) -> Option<String>,
    /// The ledger row an entry was derived from, for messages.
    pub seq: fn(&V) -> i64,
}

/// The hold index: case → (placed row, release row, the hold's JSON).
type HoldEntry = (i64, Option<i64>, String);

const HOLDS: Index<HoldEntry> = Index {
    entry: "hold",
    name: "hold index",
    kinds: &super::holds::HOLD_KINDS,
    select: "SELECT case_id, placed_seq, released_seq, body FROM hold",
    read: |row| {
        Ok((
            row.try_get("case_id")?,
            (
                row.try_get("placed_seq")?,
                row.try_get("released_seq")?,
                row.try_get("body")?,
            ),
        ))
    },
    apply: |index, row, event| match event {
        Event::HoldPlaced(hold) => {
            index.insert(hold.case, (row.seq, None, row.body.clone()));
            None
        }
        Event::HoldReleased { release, .. } => match index.get_mut(&release.case) {
            Some(entry) => {
                entry.1 = Some(row.seq);
                None
            }
            None => Some(format!(
                "row {}: releases case {}, which was never placed",
                row.seq, release.case
            )),
        },
        _ => None,
    },
    seq: |entry| entry.0,
};

/// The erasure index: request → (SHA-256 of the subject, its first row).
type ErasureEntry = (String, i64);

const ERASURES: Index<ErasureEntry> = Index {
    entry: "erasure request",
    name: "erasure index",
    kinds: &[Kind::ErasureRequested],
    select: "SELECT request, subject_sha256, seq FROM erasure",
    read: |row| {
        Ok((
            row.try_get("request")?,
            (row.try_get("subject_sha256")?, row.try_get("seq")?),
        ))
    },
    apply: |index, row, event| {
        if let Event::ErasureRequested(e) = event {
            // A repeated request keeps the row that first made it.
            index
                .entry(e.request)
                .or_insert((e.subject_sha256, row.seq));
        }
        None
    },
    seq: |entry| entry.1,
};

impl Ledger {
    /// Checks the hold and erasure indexes against the chain's rows; each
    /// problem is one sentence. Only the rows of the kinds concerned are
    /// read (the kind index finds them), so that a run can afford this check
    /// before it deletes anything.
    pub async fn verify_indexes(&self) -> Result<Vec<String>> {
        let mut problems = self.check_index(&HOLDS).await?;
        problems.extend(self.check_index(&ERASURES).await?);
        Ok(problems)
    }

    async fn check_index<V: PartialEq>(&self, index: &Index<V>) -> Result<Vec<String>> {
        let mut rows = Vec::new();
        for kind in index.kinds {
            let mut stream = self.rows_of_kind(*kind, 1, i64::MAX);
            while let Some(row) = stream.next().await {
                rows.push(row?);
            }
        }
        rows.sort_by_key(|r| r.seq);
        let mut problems = Vec::new();
        let mut expected: BTreeMap<String, V> = BTreeMap::new();
        for row in rows {
            problems.extend(self.anchored(&row).await?);
            let event = row.event()?;
            problems.extend((index.apply)(&mut expected, &row, event));
        }
        let mut actual: BTreeMap<String, V> = BTreeMap::new();
        for row in &sqlx::query(index.select).fetch_all(&self.pool).await? {
            let (key, value) = (index.read)(row)?;
            actual.insert(key, value);
        }
        let (entry, name) = (index.entry, index.name);
        for (key, want) in &expected {
            let seq = (index.seq)(want);
            match actual.get(key) {
                None => problems.push(format!(
                    "{entry} {key} (ledger row {seq}) is missing from the {name}"
                )),
                Some(got) if got != want => problems.push(format!(
                    "{entry} {key} in the {name} differs from ledger row {seq}"
                )),
                Some(_) => {}
            }
        }
        for key in actual.keys().filter(|k| !expected.contains_key(*k)) {
            problems.push(format!(
                "{entry} {key} is in the {name} but not in the ledger"
            ));
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {

    use super::super::{Release, scratch};
    use crate::hold::Hold;

    fn hold(case: &str) -> Hold {
        super::super::sample_hold(case)
    }

    async fn exec(ledger: &super::Ledger, sql: &'static str) {
        sqlx::query(sql).execute(&ledger.pool).await.unwrap();
    }

    #[tokio::test]
    async fn an_index_matching_the_chain_has_no_problems() {
        let (_dir, ledger) = scratch().await;
        ledger.place_hold(&hold("C-1")).await.unwrap();
        ledger.place_hold(&hold("C-2")).await.unwrap();
        let release = Release {
            case: "C-2".into(),
            by: "dpo".into(),
            reason: "closed".into(),
            at: crate::clock::SystemClock::read(),
            approved_by: vec![],
        };
        ledger.release_hold(&release).await.unwrap();
        ledger
            .record_erasure("r", "DSR-1", "aa", crate::clock::SystemClock::read())
            .await
            .unwrap();
        assert_eq!(ledger.verify_indexes().await.unwrap(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn an_entry_removed_changed_or_added_shows_for_holds_and_erasures_alike() {
        let (_dir, ledger) = scratch().await;
        ledger.place_hold(&hold("C-1")).await.unwrap();
        ledger.place_hold(&hold("C-2")).await.unwrap();
        ledger
            .record_erasure("r", "DSR-1", "aa", crate::clock::SystemClock::read())
            .await
            .unwrap();
        ledger
            .record_erasure("r", "DSR-2", "bb", crate::clock::SystemClock::read())
            .await
            .unwrap();
        exec(&ledger, "DELETE FROM hold WHERE case_id = 'C-1'").await;
        exec(
            &ledger,
            "UPDATE hold SET released_seq = 9 WHERE case_id = 'C-2'",
        )
        .await;
        exec(
            &ledger,
            "INSERT INTO hold (case_id, placed_seq, body) VALUES ('C-3', 7, '{}')",
        )
        .await;
        exec(&ledger, "DELETE FROM erasure WHERE request = 'DSR-1'").await;
        exec(
            &ledger,
            "UPDATE erasure SET subject_sha256 = 'cc' WHERE request = 'DSR-2'",
        )
        .await;
        exec(
            &ledger,
            "INSERT INTO erasure (request, subject_sha256, seq) VALUES ('DSR-3', 'dd', 8)",
        )
        .await;
        assert_eq!(
            ledger.verify_indexes().await.unwrap(),
            vec![
                "hold C-1 (ledger row 1) is missing from the hold index",
                "hold C-2 in the hold index differs from ledger row 2",
                "hold C-3 is in the hold index but not in the ledger",
                "erasure request DSR-1 (ledger row 3) is missing from the erasure index",
                "erasure request DSR-2 in the erasure index differs from ledger row 4",
                "erasure request DSR-3 is in the erasure index but not in the ledger",
            ]
        );
    }

    #[tokio::test]
    async fn an_indexed_row_rewritten_with_its_hash_shows_against_the_next_row() {
        let (_dir, ledger) = scratch().await;
        ledger.place_hold(&hold("C-1")).await.unwrap();
        ledger
            .record_erasure("r", "DSR-1", "aa", crate::clock::SystemClock::read())
            .await
            .unwrap();
        exec(&ledger, "UPDATE ledger SET hash = 'ff' WHERE seq = 1").await;
        let problems = ledger.verify_indexes().await.unwrap();
        assert_eq!(
            problems,
            vec!["row 1: content does not match its hash (the row was edited)"]
        );
    }
}
