//! Execution: delete decisions become recorded intents, deletions, verified
//! absences and recorded outcomes.
//!
//! The protocol for every batch is: write the intents (one per object: the
//! recording, then its sidecars and companions) to the [`Journal`] in one
//! transaction; delete each group, recording first, with bounded concurrency;
//! check each object's absence with a `head`; write the outcomes in one
//! transaction. A crash between the two writes leaves intents without
//! outcomes, which [`recover`] completes at the start of the next run. Nothing
//! is deleted before its intent is durable, so the ledger always shows at
//! least what happened. Failures are values in the report, not early returns:
//! one object that cannot be deleted does not stop the others.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{BufRead, BufReader, BufWriter, Write};

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::decide::{Action, Planned};
use crate::store::{Deleted, Store};

/// How many log lines at info level show individual deletions per store.
const LOG_SAMPLE: u64 = 10;
/// How many failure messages a report keeps.
const FAILURE_SAMPLE: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Recording,
    Sidecar,
    Companion,
}

/// The intent to delete one object, with the decision that led to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub store: String,
    pub key: String,
    pub role: Role,
    /// The recording this object belongs to (itself for a recording).
    pub recording: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    pub purposes: Vec<String>,
    pub recorded_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub rules: Vec<String>,
    /// The purpose whose retention expired last.
    pub purpose: String,
    pub basis: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Deleted, and a `head` afterwards found nothing.
    Deleted,
    /// The store said it was not there; a `head` confirmed it.
    AlreadyAbsent,
    Failed,
    /// Not attempted because its recording could not be deleted.
    Skipped,
    /// Planned by an interrupted run that never deleted it; re-planned since.
    Abandoned,
}

impl Status {
    /// Whether the object is verified gone and belongs in a certificate.
    pub fn is_certified(self) -> bool {
        matches!(self, Status::Deleted | Status::AlreadyAbsent)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Deleted => "deleted",
            Status::AlreadyAbsent => "already-absent",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Abandoned => "abandoned",
        }
    }
}

/// What happened to the object of the intent with ledger sequence `intent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub intent: i64,
    pub result: Status,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The verification statement a certified outcome carries.
pub const VERIFICATION: &str =
    "absent: a read of the object's metadata after deletion found nothing";

pub type JournalError = Box<dyn std::error::Error + Send + Sync>;

/// Where intents and outcomes are made durable (the ledger implements it).
pub trait Journal {
    /// Records intents in one transaction; returns their sequence numbers in order.
    fn record_intents(
        &self,
        intents: &[Intent],
    ) -> impl Future<Output = Result<Vec<i64>, JournalError>> + Send;
    /// Records outcomes in one transaction.
    fn record_outcomes(
        &self,
        outcomes: &[(Intent, Outcome)],
    ) -> impl Future<Output = Result<(), JournalError>> + Send;
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Recordings per intent/outcome transaction.
    pub batch: usize,
    /// Groups deleted at once.
    pub concurrency: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            batch: 500,
            concurrency: 16,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub recordings_deleted: u64,
    pub objects_deleted: u64,
    pub already_absent: u64,
    pub bytes_deleted: u64,
    pub failed: u64,
    pub skipped: u64,
    pub deleted_by_purpose: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// Set when the journal failed and execution stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
}

impl Report {
    fn absorb(&mut self, store: &str, intent: &Intent, outcome: &Outcome) {
        match outcome.result {
            Status::Deleted | Status::AlreadyAbsent => {
                if outcome.result == Status::Deleted {
                    self.objects_deleted += 1;
                    self.bytes_deleted += intent.size;
                } else {
                    self.already_absent += 1;
                }
                if intent.role == Role::Recording {
                    self.recordings_deleted += 1;
                    *self
                        .deleted_by_purpose
                        .entry(intent.purpose.clone())
                        .or_default() += 1;
                    if self.recordings_deleted <= LOG_SAMPLE {
                        info!(store, key = %intent.key, purpose = %intent.purpose, result = outcome.result.as_str(), "deleted (sample)");
                    }
                }
                debug!(store, key = %intent.key, role = ?intent.role, result = outcome.result.as_str(), "deleted");
            }
            Status::Failed => {
                self.failed += 1;
                let detail = outcome.detail.clone().unwrap_or_default();
                if self.failed <= LOG_SAMPLE {
                    warn!(store, key = %intent.key, error = %detail, "deletion failed");
                } else {
                    debug!(store, key = %intent.key, error = %detail, "deletion failed");
                }
                if self.failures.len() < FAILURE_SAMPLE {
                    self.failures
                        .push(format!("{store}: {}: {detail}", intent.key));
                }
            }
            Status::Skipped => self.skipped += 1,
            Status::Abandoned => {}
        }
    }

    pub fn merge(&mut self, other: Report) {
        self.recordings_deleted += other.recordings_deleted;
        self.objects_deleted += other.objects_deleted;
        self.already_absent += other.already_absent;
        self.bytes_deleted += other.bytes_deleted;
        self.failed += other.failed;
        self.skipped += other.skipped;
        for (k, v) in other.deleted_by_purpose {
            *self.deleted_by_purpose.entry(k).or_default() += v;
        }
        for f in other.failures {
            if self.failures.len() < FAILURE_SAMPLE {
                self.failures.push(f);
            }
        }
        if self.aborted.is_none() {
            self.aborted = other.aborted;
        }
    }
}

fn intent_for(
    item: &Planned,
    role: Role,
    key: &str,
    size: u64,
    e_tag: Option<String>,
) -> Option<Intent> {
    Some(Intent {
        store: item.store.clone(),
        key: key.to_string(),
        role,
        recording: item.key.clone(),
        size,
        e_tag,
        purposes: item.purposes.clone(),
        recorded_at: item.recorded_at?,
        expires_at: item.expires_at?,
        rules: item.rules.clone(),
        purpose: item.purpose.clone()?,
        basis: item.basis.clone()?,
    })
}

/// The objects of one delete item, recording first. Companion keys are
/// looked up; absent companions have nothing to delete.
async fn group_intents(store: &Store, item: &Planned) -> Result<Vec<Intent>, String> {
    let object = item
        .object
        .as_ref()
        .ok_or("a delete item without object metadata")?;
    let mut intents = vec![
        intent_for(
            item,
            Role::Recording,
            &item.key,
            object.size,
            object.e_tag.clone(),
        )
        .ok_or("a delete item without its decision")?,
    ];
    for s in &item.sidecars {
        intents.extend(intent_for(
            item,
            Role::Sidecar,
            &s.key,
            s.size,
            s.e_tag.clone(),
        ));
    }
    for c in &item.companions {
        if intents.iter().any(|i| &i.key == c) {
            continue;
        }
        match store.head(c).await {
            Ok(Some(meta)) => {
                intents.extend(intent_for(item, Role::Companion, c, meta.size, meta.e_tag))
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot check companion {c}: {e}")),
        }
    }
    Ok(intents)
}

/// Deletes `key` and checks that it is gone.
async fn delete_verified(store: &Store, key: &str) -> (Status, Option<String>) {
    let deleted = match store.delete(key).await {
        Ok(d) => d,
        Err(e) => return (Status::Failed, Some(e.to_string())),
    };
    match store.head(key).await {
        Ok(None) => (
            if deleted == Deleted::Deleted {
                Status::Deleted
            } else {
                Status::AlreadyAbsent
            },
            None,
        ),
        Ok(Some(_)) => (
            Status::Failed,
            Some("the object is still present after the delete".into()),
        ),
        Err(e) => (
            Status::Failed,
            Some(format!("absence could not be verified: {e}")),
        ),
    }
}

/// Deletes one group: the recording, then (only if it is gone) the rest.
async fn delete_group(store: &Store, group: Vec<(i64, Intent)>) -> Vec<(Intent, Outcome)> {
    let mut out = Vec::with_capacity(group.len());
    let mut recording_gone = true;
    for (seq, intent) in group {
        let (result, detail) = if recording_gone {
            delete_verified(store, &intent.key).await
        } else {
            (
                Status::Skipped,
                Some("not attempted: its recording could not be deleted".into()),
            )
        };
        if intent.role == Role::Recording {
            recording_gone = result.is_certified();
        }
        out.push((
            intent,
            Outcome {
                intent: seq,
                result,
                at: Utc::now(),
                detail,
            },
        ));
    }
    out
}

/// Executes the delete items of one store. Items that are not deletions are ignored.
pub async fn execute<J: Journal>(
    store: &Store,
    items: impl Stream<Item = Planned>,
    journal: &J,
    options: Options,
) -> Report {
    let mut report = Report::default();
    let mut batches = std::pin::pin!(
        items
            .filter(|i| std::future::ready(i.action == Action::Delete))
            .chunks(options.batch.max(1))
    );
    while let Some(batch) = batches.next().await {
        // Resolve each group's objects (companion lookups run concurrently).
        let groups: Vec<(Planned, Result<Vec<Intent>, String>)> = futures::stream::iter(batch)
            .map(|item| async move {
                let g = group_intents(store, &item).await;
                (item, g)
            })
            .buffered(options.concurrency.max(1))
            .collect()
            .await;
        let mut planned_groups: Vec<Vec<Intent>> = Vec::new();
        for (item, g) in groups {
            match g {
                Ok(intents) => planned_groups.push(intents),
                Err(e) => {
                    report.failed += 1;
                    warn!(store = store.name(), key = %item.key, error = %e, "not deleted");
                    if report.failures.len() < FAILURE_SAMPLE {
                        report
                            .failures
                            .push(format!("{}: {}: {e}", store.name(), item.key));
                    }
                }
            }
        }
        let flat: Vec<Intent> = planned_groups.iter().flatten().cloned().collect();
        if flat.is_empty() {
            continue;
        }
        let seqs = match journal.record_intents(&flat).await {
            Ok(s) => s,
            Err(e) => {
                report.aborted = Some(format!(
                    "cannot record deletion intents, nothing more is deleted: {e}"
                ));
                return report;
            }
        };
        let mut seqs = seqs.into_iter();
        let numbered: Vec<Vec<(i64, Intent)>> = planned_groups
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .map(|i| (seqs.next().unwrap_or_default(), i))
                    .collect()
            })
            .collect();
        let outcomes: Vec<(Intent, Outcome)> = futures::stream::iter(numbered)
            .map(|g| delete_group(store, g))
            .buffer_unordered(options.concurrency.max(1))
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        for (intent, outcome) in &outcomes {
            report.absorb(store.name(), intent, outcome);
        }
        if let Err(e) = journal.record_outcomes(&outcomes).await {
            report.aborted = Some(format!(
                "cannot record deletion outcomes (the next run completes them): {e}"
            ));
            return report;
        }
    }
    report
}

/// An intent without an outcome, left by an interrupted run.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub run_id: String,
    pub intent: Intent,
}

/// Completes what interrupted runs left. A group whose recording is gone is
/// finished (its sidecars and companions deleted); a group whose recording is
/// still there was never started and is abandoned, to be planned afresh.
/// Groups whose store is unavailable stay pending.
pub async fn recover<J: Journal>(
    stores: &HashMap<String, Store>,
    pending: Vec<Pending>,
    journal: &J,
) -> Report {
    let mut report = Report::default();
    let mut groups: BTreeMap<(String, String), Vec<Pending>> = BTreeMap::new();
    for p in pending {
        groups
            .entry((p.intent.store.clone(), p.intent.recording.clone()))
            .or_default()
            .push(p);
    }
    for ((store_name, recording), mut group) in groups {
        let Some(store) = stores.get(&store_name) else {
            warn!(store = %store_name, key = %recording, "interrupted deletion cannot be completed: the store is not available");
            report.failed += 1;
            continue;
        };
        group.sort_by_key(|p| (p.intent.role != Role::Recording, p.seq));
        let present = match store.head(&recording).await {
            Ok(p) => p.is_some(),
            Err(e) => {
                report.failed += 1;
                report.failures.push(format!(
                    "{store_name}: {recording}: cannot check after an interrupted run: {e}"
                ));
                continue;
            }
        };
        let mut outcomes = Vec::new();
        for p in group {
            let (result, detail) = if present {
                (
                    Status::Abandoned,
                    Some(format!(
                        "run {} was interrupted before deleting it",
                        p.run_id
                    )),
                )
            } else if p.intent.role == Role::Recording {
                (
                    Status::Deleted,
                    Some(format!(
                        "run {} was interrupted; absence verified on recovery",
                        p.run_id
                    )),
                )
            } else {
                let (r, d) = delete_verified(store, &p.intent.key).await;
                (
                    r,
                    d.or_else(|| Some(format!("completed after run {} was interrupted", p.run_id))),
                )
            };
            let outcome = Outcome {
                intent: p.seq,
                result,
                at: Utc::now(),
                detail,
            };
            report.absorb(&store_name, &p.intent, &outcome);
            outcomes.push((p.intent, outcome));
        }
        if let Err(e) = journal.record_outcomes(&outcomes).await {
            report.aborted = Some(format!("cannot record recovered outcomes: {e}"));
            return report;
        }
    }
    report
}

/// Delete items spilled to a temporary file between planning and execution,
/// so that the safety limits can be checked on the whole plan without
/// holding it in memory.
pub struct Spool {
    writer: BufWriter<tempfile::NamedTempFile>,
    count: u64,
}

impl Spool {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            writer: BufWriter::new(
                tempfile::Builder::new()
                    .prefix("lethe-plan-")
                    .suffix(".jsonl")
                    .tempfile()?,
            ),
            count: 0,
        })
    }

    pub fn push(&mut self, item: &Planned) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.writer, item)?;
        self.writer.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The spooled items, in order. The file is removed when the stream ends.
    pub fn into_stream(self) -> std::io::Result<impl Stream<Item = Planned>> {
        let file = self.writer.into_inner().map_err(|e| e.into_error())?;
        let reader = BufReader::new(file.reopen()?);
        // Keep the temporary file alive until the stream is dropped.
        let lines = reader
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Planned>(&l).ok());
        Ok(futures::stream::iter(lines.inspect(move |_| {
            let _keep = &file;
        })))
    }
}
