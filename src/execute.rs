//! Execution: delete decisions become recorded intents, deletions, verified
//! absences and recorded outcomes.
//!
//! The protocol for every batch is: write the intents (one per object: the
//! recording, then its sidecars and companions) to the [`Journal`] in one
//! transaction; delete each group, recording first, with bounded concurrency;
//! check each object's absence (a listing of the batch's key range, or a
//! `head` each: [`Verification`]); write the outcomes in one
//! transaction. A crash between the two writes leaves intents without
//! outcomes, which [`recover`] completes at the start of the next run. Nothing
//! is deleted before its intent is durable, so the ledger always shows at
//! least what happened. Failures are values in the report, not early returns:
//! one object that cannot be deleted does not stop the others.

use std::collections::{BTreeMap, HashMap};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::decide::{Action, Planned};
use crate::hold::HoldTarget;
use crate::store::{DeleteAnswer, Presence, Store, Verification};

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
    /// Deleted, and the verification afterwards found nothing.
    Deleted,
    /// The store said it was not there (or did not answer); a `head`
    /// found nothing.
    AlreadyAbsent,
    Failed,
    /// The delete was sent, but whether the object is gone could not be
    /// checked (the store kept failing). Its intent stays pending (see
    /// [`stays_pending`]): the next run checks it again, and certifies it if
    /// it is gone.
    Unconfirmed,
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
            Status::Unconfirmed => "unconfirmed",
            Status::Skipped => "skipped",
            Status::Abandoned => "abandoned",
        }
    }
}

/// Whether an intent stays pending after this outcome, for the next run's
/// recovery to finish: a deletion that could not be confirmed, and a sidecar
/// or companion that failed or was skipped (its recording may be gone, and
/// then no listing leads back to it). Recovery deletes it if its recording is
/// gone, and abandons it to a fresh plan if not. A failed recording is
/// planned afresh from the listing instead.
pub fn stays_pending(intent: &Intent, outcome: &Outcome) -> bool {
    match outcome.result {
        Status::Unconfirmed => true,
        Status::Failed | Status::Skipped => intent.role != Role::Recording,
        _ => false,
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
    /// How a certified outcome's absence was verified; absent from the
    /// outcomes of releases that checked with a `head` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<Verification>,
}

/// The verification statement a certified outcome carries, by how it was
/// verified (`None`: an earlier release's outcome, verified with a head).
pub fn verification_statement(verified_by: Option<Verification>) -> &'static str {
    match verified_by {
        Some(Verification::Listing) => {
            "absent: a listing of the key range after deletion did not show the object"
        }
        Some(Verification::Head) | None => {
            "absent: a read of the object's metadata after deletion found nothing"
        }
    }
}

/// What [`delete_verified`] found for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub detail: Option<String>,
    /// How its absence was verified, when it is certified.
    pub verified_by: Option<Verification>,
}

pub type JournalError = Box<dyn std::error::Error + Send + Sync>;

/// Where intents and outcomes are made durable (the ledger implements it).
/// The intents of one recording and its objects, with the facts an active
/// legal hold is checked against when they are recorded.
#[derive(Debug, Clone)]
pub struct IntentGroup {
    pub target: Option<HoldTarget>,
    pub intents: Vec<Intent>,
}

/// What the journal did with a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded; the sequence numbers of its intents, in order.
    Intents(Vec<i64>),
    /// Not recorded: a hold placed since planning covers the recording.
    Held { case: String },
}

pub trait Journal: Sync {
    /// Records intents in one transaction, after checking each group against
    /// the active holds in that same transaction (a hold placed a moment ago
    /// protects every deletion that has not started).
    fn record_intents(
        &self,
        groups: &[IntentGroup],
    ) -> impl Future<Output = Result<Vec<Recorded>, JournalError>> + Send;
    /// Records outcomes in one transaction.
    fn record_outcomes(
        &self,
        outcomes: &[(Intent, Outcome)],
    ) -> impl Future<Output = Result<(), JournalError>> + Send;
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Recordings per intent/outcome transaction.
    pub batch: usize,
    /// Groups deleted at once.
    pub concurrency: usize,
    /// Set (by SIGTERM) to stop after the batch in progress.
    pub stop: Option<Arc<AtomicBool>>,
    /// Counts recordings deleted as they go, for a progress display.
    pub progress: Option<Arc<AtomicU64>>,
    /// What stamps each outcome: the run's clock.
    pub clock: SharedClock,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            batch: 500,
            concurrency: 16,
            stop: None,
            progress: None,
            clock: SystemClock::shared(),
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
    /// Recordings a hold placed during the run protected.
    pub held: u64,
    pub deleted_by_purpose: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// Set when the journal failed and execution stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// Stopped on request (SIGTERM) after a batch; the rest waits for the next run.
    pub interrupted: bool,
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
            Status::Failed | Status::Unconfirmed => {
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
        self.held += other.held;
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
        self.interrupted |= other.interrupted;
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

/// One recording's objects to delete: the recording, its sidecars, and the
/// companions the scan's listing showed (`Planned::companion_objects`, found
/// when the plan was resolved: no request here).
fn group_intents(item: &Planned) -> Result<Vec<Intent>, String> {
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
    let listed = match &item.companion_objects {
        Some(listed) => listed.as_slice(),
        None if item.companions.is_empty() => &[],
        None => {
            return Err(
                "its companions were not matched against the store's listing: not deleted".into(),
            );
        }
    };
    for c in listed {
        if intents.iter().any(|i| i.key == c.key) {
            continue;
        }
        intents.extend(intent_for(
            item,
            Role::Companion,
            &c.key,
            c.size,
            c.e_tag.clone(),
        ));
    }
    Ok(intents)
}

/// Attempts per key before a deletion counts as failed.
const DELETE_ATTEMPTS: u32 = 4;
/// First pause between attempts; it grows fourfold each time, with jitter.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

fn backoff(attempt: u32) -> Duration {
    let base = RETRY_BACKOFF * 4u32.pow(attempt.saturating_sub(1));
    // Full jitter between half and all of the base keeps retries of many
    // workers from arriving together.
    base / 2 + base.mul_f64(fastrand::f64() / 2.0)
}

/// Deletes `keys` in bulk, then checks that each one is gone (a listing of
/// their range or a `head` each, as the store verifies).
/// Keys still present (or whose absence cannot be checked) are deleted again,
/// up to [`DELETE_ATTEMPTS`] times with backoff, so that every key ends in
/// exactly one state. Results come back in the order of `keys`.
pub async fn delete_verified(store: &Store, keys: &[String], concurrency: usize) -> Vec<Verdict> {
    let mut results: Vec<Option<Verdict>> = vec![None; keys.len()];
    let mut confirmed = vec![false; keys.len()];
    let mut last_error: Vec<Option<String>> = vec![None; keys.len()];
    // Whether the last check of each key failed (rather than found it present).
    let mut unchecked = vec![false; keys.len()];
    let mut pending: Vec<usize> = (0..keys.len()).collect();
    for attempt in 1..=DELETE_ATTEMPTS {
        let batch: Vec<String> = pending.iter().map(|&i| keys[i].clone()).collect();
        let answers = store.delete_many(&batch).await;
        let mut to_check = Vec::with_capacity(pending.len());
        let mut throttled = false;
        for (&i, answer) in pending.iter().zip(answers) {
            match answer {
                DeleteAnswer::Deleted => confirmed[i] = true,
                DeleteAnswer::NotFound => {}
                // A refusal is lethe's own decision: trying again changes nothing.
                DeleteAnswer::Refused(reason) => {
                    results[i] = Some(Verdict {
                        status: Status::Failed,
                        detail: Some(reason),
                        verified_by: None,
                    });
                    continue;
                }
                DeleteAnswer::Unanswered(error) => {
                    throttled |= error.as_deref().is_some_and(crate::store::is_throttling);
                    last_error[i] = error.or(last_error[i].take());
                }
            }
            to_check.push(i);
        }
        if std::mem::take(&mut throttled) {
            // Fewer batches in flight from now on, and this one waits
            // before it tries these keys again.
            store.in_flight().slow_down();
        }
        // Absence rests on two observations: the store's confirmation of
        // the delete and its verification (a listing of the batch's range,
        // or a head). Where the store did not confirm, a listing alone is
        // not trusted (a store that hides a key from one listing would
        // certify it): a head must say it is gone.
        let (confirmed_now, unconfirmed): (Vec<usize>, Vec<usize>) =
            to_check.iter().partition(|&&i| confirmed[i]);
        let keys_of =
            |idx: &[usize]| -> Vec<String> { idx.iter().map(|&i| keys[i].clone()).collect() };
        let checks: Vec<(usize, Presence)> = confirmed_now
            .iter()
            .copied()
            .zip(store.presence(&keys_of(&confirmed_now), concurrency).await)
            .chain(
                unconfirmed.iter().copied().zip(
                    store
                        .head_presence(&keys_of(&unconfirmed), concurrency)
                        .await,
                ),
            )
            .collect();
        pending.clear();
        for (i, (check, how)) in checks {
            match check {
                Ok(false) => {
                    let status = if confirmed[i] {
                        Status::Deleted
                    } else {
                        Status::AlreadyAbsent
                    };
                    let detail = if confirmed[i] {
                        None
                    } else {
                        last_error[i]
                            .take()
                            .map(|e| format!("the store reported {e}, but the object is gone"))
                    };
                    results[i] = Some(Verdict {
                        status,
                        detail,
                        verified_by: Some(how),
                    });
                }
                Ok(true) => {
                    last_error[i].get_or_insert_with(|| {
                        "the object is still present after the delete".into()
                    });
                    unchecked[i] = false;
                    pending.push(i);
                }
                Err(e) => {
                    last_error[i] = Some(format!("absence could not be verified: {e}"));
                    unchecked[i] = true;
                    pending.push(i);
                }
            }
        }
        if pending.is_empty() {
            break;
        }
        if attempt < DELETE_ATTEMPTS {
            debug!(
                store = store.name(),
                keys = pending.len(),
                attempt,
                "retrying deletions"
            );
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
    for i in pending {
        // A delete was sent: if the object's presence is unknown, it may be
        // gone, and only a later check can say so.
        let status = if unchecked[i] {
            Status::Unconfirmed
        } else {
            Status::Failed
        };
        results[i] = Some(Verdict {
            status,
            detail: last_error[i].take(),
            verified_by: None,
        });
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or(Verdict {
                status: Status::Failed,
                detail: Some("no result".into()),
                verified_by: None,
            })
        })
        .collect()
}

/// Deletes a batch of groups: every group's recording first, in bulk; then,
/// for the groups whose recording is verified gone, their sidecars and
/// companions. The objects of a group whose recording stays are not touched.
async fn delete_groups(
    store: &Store,
    groups: Vec<Vec<(i64, Intent)>>,
    concurrency: usize,
    clock: &dyn Clock,
) -> Vec<(Intent, Outcome)> {
    let recordings: Vec<String> = groups.iter().map(|g| g[0].1.key.clone()).collect();
    let recording_results = delete_verified(store, &recordings, concurrency).await;
    let others: Vec<(usize, usize)> = groups
        .iter()
        .enumerate()
        .filter(|(gi, _)| recording_results[*gi].status.is_certified())
        .flat_map(|(gi, g)| (1..g.len()).map(move |ii| (gi, ii)))
        .collect();
    let other_keys: Vec<String> = others
        .iter()
        .map(|&(gi, ii)| groups[gi][ii].1.key.clone())
        .collect();
    let mut other_results: HashMap<(usize, usize), Verdict> = others
        .into_iter()
        .zip(delete_verified(store, &other_keys, concurrency).await)
        .collect();
    let mut out = Vec::new();
    for ((gi, group), recording) in groups.into_iter().enumerate().zip(recording_results) {
        for (ii, (seq, intent)) in group.into_iter().enumerate() {
            let verdict = match ii {
                0 => recording.clone(),
                _ => other_results.remove(&(gi, ii)).unwrap_or(Verdict {
                    status: Status::Skipped,
                    detail: Some("not attempted: its recording could not be deleted".into()),
                    verified_by: None,
                }),
            };
            out.push((
                intent,
                Outcome {
                    intent: seq,
                    result: verdict.status,
                    at: clock.now(),
                    detail: verdict.detail,
                    verified_by: verdict.verified_by,
                },
            ));
        }
    }
    out
}

/// One batch whose intents are durable, to be deleted.
type Numbered = Vec<Vec<(i64, Intent)>>;

/// A recorded batch on its way to deletion, with its place among the
/// batches recorded and not yet finished.
struct Ready {
    numbered: Numbered,
    ahead: tokio::sync::OwnedSemaphorePermit,
}

/// Executes the delete items of one store. Items that are not deletions are
/// ignored.
///
/// Two stages work at once: one prepares each batch (its groups of
/// objects, then its intents, recorded fenced and checked against the
/// holds), the other deletes the batches whose intents are durable, up to
/// the store's `max_in_flight` at a time ([`crate::store::Throttle`]), and
/// records each batch's outcomes. So the database records batch N+1 while
/// the store deletes batch N; every batch's deletes still wait for its own
/// intents, and at most one batch more than may delete is recorded ahead. A
/// stop request ends the preparing (no new intents), and the batches
/// already recorded are deleted. When the journal fails, nothing
/// more is recorded or deleted: intents already durable and not yet
/// deleted stay pending for the next run's recovery, which abandons them
/// (their recordings are still there) to a fresh plan.
pub async fn execute<J: Journal>(
    store: &Store,
    items: impl Stream<Item = Planned>,
    journal: &J,
    options: Options,
) -> Report {
    let throttle = store.in_flight();
    let halt = AtomicBool::new(false);
    // Batches recorded and not yet finished: those deleting, and one more.
    let ahead = Arc::new(tokio::sync::Semaphore::new(throttle.max() + 1));
    let (ready, recorded) = tokio::sync::mpsc::unbounded_channel::<Ready>();
    let prepare = async {
        let report = prepare_batches(store, items, journal, &options, &halt, &ahead, &ready).await;
        drop(ready);
        report
    };
    let delete = async {
        let mut report = Report::default();
        let mut done = std::pin::pin!(
            futures::stream::unfold(recorded, |mut rx| async move {
                rx.recv().await.map(|batch| (batch, rx))
            })
            .map(|batch: Ready| async {
                let done = delete_batch(store, batch.numbered, journal, &options, &halt).await;
                drop(batch.ahead);
                done
            })
            .buffer_unordered(throttle.max())
        );
        while let Some(batch) = done.next().await {
            let before = report.recordings_deleted;
            for (intent, outcome) in &batch.outcomes {
                report.absorb(store.name(), intent, outcome);
            }
            if let Some(p) = &options.progress {
                p.fetch_add(report.recordings_deleted - before, Ordering::Relaxed);
            }
            if report.aborted.is_none() {
                report.aborted = batch.aborted;
            }
        }
        report
    };
    let (mut report, deleted) = futures::join!(prepare, delete);
    // What stopped the preparing after a failed outcome is the deleting's
    // failure: say that one.
    if deleted.aborted.is_some() {
        report.aborted = None;
    }
    report.merge(deleted);
    report
}

/// Whether a stop was asked for (said once in the log when seen).
fn stopping(options: &Options) -> bool {
    let asked = options
        .stop
        .as_ref()
        .is_some_and(|s| s.load(Ordering::SeqCst));
    if asked {
        info!("stopping after the batches in progress, as asked");
    }
    asked
}

/// What deleting one batch did.
struct BatchDone {
    outcomes: Vec<(Intent, Outcome)>,
    aborted: Option<String>,
}

/// Deletes one batch whose intents are durable, holding one of the store's
/// permits, and records its outcomes; skipped once the journal has failed.
async fn delete_batch<J: Journal>(
    store: &Store,
    numbered: Numbered,
    journal: &J,
    options: &Options,
    halt: &AtomicBool,
) -> BatchDone {
    let throttle = store.in_flight();
    let permit = throttle.acquire().await;
    if halt.load(Ordering::SeqCst) {
        return BatchDone {
            outcomes: Vec::new(),
            aborted: None,
        };
    }
    let slowed = throttle.slow_downs();
    let outcomes =
        delete_groups(store, numbered, options.concurrency, options.clock.as_ref()).await;
    if throttle.slow_downs() == slowed {
        throttle.went_well();
    }
    drop(permit);
    let aborted = match journal.record_outcomes(&outcomes).await {
        Ok(()) => None,
        Err(e) => {
            halt.store(true, Ordering::SeqCst);
            Some(format!(
                "cannot record deletion outcomes (the next run completes them): {e}"
            ))
        }
    };
    BatchDone { outcomes, aborted }
}

/// Prepares the batches of `items` one after another: makes each group's
/// intents, records them, and hands the recorded groups to
/// `ready`. Stops at a stop request, a journal failure, or `halt`.
#[allow(clippy::too_many_arguments)]
async fn prepare_batches<J: Journal>(
    store: &Store,
    items: impl Stream<Item = Planned>,
    journal: &J,
    options: &Options,
    halt: &AtomicBool,
    ahead: &Arc<tokio::sync::Semaphore>,
    ready: &tokio::sync::mpsc::UnboundedSender<Ready>,
) -> Report {
    let mut report = Report::default();
    let mut batches = std::pin::pin!(
        items
            .filter(|i| std::future::ready(i.action == Action::Delete))
            .chunks(options.batch.max(1))
    );
    while let Some(batch) = batches.next().await {
        if halt.load(Ordering::SeqCst) {
            return report;
        }
        if stopping(options) {
            report.interrupted = true;
            return report;
        }
        // Each group's objects, companions as the scan's listing showed them.
        let groups: Vec<(Planned, Result<Vec<Intent>, String>)> = batch
            .into_iter()
            .map(|item| {
                let g = group_intents(&item);
                (item, g)
            })
            .collect();
        let mut planned_groups: Vec<IntentGroup> = Vec::new();
        for (item, g) in groups {
            match g {
                Ok(intents) => planned_groups.push(IntentGroup {
                    target: item.hold_target(),
                    intents,
                }),
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
        if planned_groups.is_empty() {
            continue;
        }
        // Wait until no more than one batch waits for deletion, and look
        // again: a stop or a failure while waiting records nothing more.
        let Ok(place) = ahead.clone().acquire_owned().await else {
            return report;
        };
        if halt.load(Ordering::SeqCst) {
            return report;
        }
        if stopping(options) {
            report.interrupted = true;
            return report;
        }
        let recorded = match journal.record_intents(&planned_groups).await {
            Ok(r) => r,
            Err(e) => {
                report.aborted = Some(format!(
                    "cannot record deletion intents, nothing more is deleted: {e}"
                ));
                return report;
            }
        };
        let mut numbered: Numbered = Vec::new();
        for (group, recorded) in planned_groups.into_iter().zip(recorded) {
            match recorded {
                Recorded::Intents(seqs) => {
                    numbered.push(seqs.into_iter().zip(group.intents).collect())
                }
                Recorded::Held { case } => {
                    report.held += 1;
                    let key = group
                        .intents
                        .first()
                        .map(|i| i.key.clone())
                        .unwrap_or_default();
                    info!(store = store.name(), key = %key, case = %case, "not deleted: a legal hold placed since planning covers it");
                }
            }
        }
        if !numbered.is_empty()
            && ready
                .send(Ready {
                    numbered,
                    ahead: place,
                })
                .is_err()
        {
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
    clock: &dyn Clock,
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
            let (result, detail, verified_by) = if present {
                (
                    Status::Abandoned,
                    Some(format!(
                        "run {} did not delete it (interrupted, or its delete could not be confirmed)",
                        p.run_id
                    )),
                    None,
                )
            } else if p.intent.role == Role::Recording {
                (
                    Status::Deleted,
                    Some(format!(
                        "run {} did not confirm it (interrupted, or the store did not answer); absence verified on recovery",
                        p.run_id
                    )),
                    Some(Verification::Head),
                )
            } else {
                let v = delete_verified(store, std::slice::from_ref(&p.intent.key), 1)
                    .await
                    .remove(0);
                let detail = v
                    .detail
                    .or_else(|| Some(format!("completed after run {} left it pending", p.run_id)));
                (v.status, detail, v.verified_by)
            };
            let outcome = Outcome {
                intent: p.seq,
                result,
                at: clock.now(),
                detail,
                verified_by,
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
