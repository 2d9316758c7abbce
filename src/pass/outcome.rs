//! What a pass did, as typed values: the run's status, each store's plan
//! and report, the safety breaches, the problems, the certificate. The CLI
//! renders these and maps them to an exit code; telemetry reads its figures
//! from them.

use chrono::{DateTime, Utc};

use crate::certificate::Protected;
use crate::decide::{Action, Planned, StoreStats};
use crate::execute::Report;
use crate::store::DeletionStatement;
use crate::telemetry::{RunLabel, StoreFigures};

pub use crate::ledger::RunStatus;

/// What the run means for whoever started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everything planned was done, recorded and certified.
    Done,
    /// Something was left undone (a store, an object, the certificate, a
    /// stop request): the next run picks it up.
    Incomplete,
    /// A safety limit stopped the run before anything was deleted.
    Stopped,
}

/// One configured store's part of the run.
#[derive(Debug, Clone)]
pub struct StoreOutcome {
    pub name: String,
    /// For people: passwords and query strings left out.
    pub url: String,
    /// The plan's figures; `None` if the store could not be planned.
    pub stats: Option<StoreStats>,
    /// Why the store could not be opened or listed: nothing in it was deleted.
    pub error: Option<String>,
    pub report: Report,
    /// How deletions end in this store, as the certificate states it.
    pub deletion: DeletionStatement,
    /// How absence after a delete is verified; `None` if the store could
    /// not be opened.
    pub verification: Option<crate::store::Verification>,
}

/// A run limited to an approved plan.
#[derive(Debug, Clone)]
pub struct ApprovedSummary {
    pub sha256: String,
    pub items: u64,
    /// Deletions due now that were not in the plan: they wait for approval.
    pub not_approved: u64,
}

/// An erasure request's part of the run.
#[derive(Debug, Clone, Default)]
pub struct ErasureOutcome {
    pub request: String,
    /// The subject's objects kept, each with its legal basis.
    pub protected: Vec<Protected>,
    /// A sample of the recordings erased (or, in a dry run, to erase).
    pub erased: Vec<(String, String)>,
    /// How many recordings are erased.
    pub erasing: u64,
}

impl ErasureOutcome {
    /// Nothing of the subject was found in any store.
    pub fn found_nothing(&self) -> bool {
        self.erasing == 0 && self.protected.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run_id: String,
    pub dry_run: bool,
    pub status: RunStatus,
    pub stores: Vec<StoreOutcome>,
    /// What this run completed of an interrupted one.
    pub recovered: Report,
    pub breaches: Vec<String>,
    pub problems: Vec<String>,
    /// Where the certificate went; `None` in a dry run or when it failed.
    pub certificate: Option<String>,
    pub approved: Option<ApprovedSummary>,
    pub erasure: Option<ErasureOutcome>,
    /// Data subjects' requests past their Art. 12(3) deadline, unanswered.
    pub late_requests: u64,
    /// The instant the ledger records as the run's end.
    pub finished_at: DateTime<Utc>,
}

impl RunOutcome {
    pub fn verdict(&self) -> Verdict {
        if !self.breaches.is_empty() {
            Verdict::Stopped
        } else if self.status != RunStatus::Completed
            || !self.problems.is_empty()
            || (self.certificate.is_none() && !self.dry_run)
        {
            Verdict::Incomplete
        } else {
            Verdict::Done
        }
    }

    /// The run's figures per store, for the metrics.
    pub fn figures(&self) -> Vec<StoreFigures> {
        self.stores
            .iter()
            .map(|p| {
                let stats = p.stats.clone().unwrap_or_default();
                StoreFigures {
                    store: p.name.clone(),
                    scanned: stats.listed,
                    deleted_by_purpose: p
                        .report
                        .deleted_by_purpose
                        .iter()
                        .map(|(k, v)| (k.clone(), *v))
                        .collect(),
                    bytes_deleted: p.report.bytes_deleted,
                    failed: p.report.failed,
                    held: stats.held + p.report.held,
                    unclassified: stats
                        .report_by_code
                        .iter()
                        .map(|(code, n)| (code.clone(), *n))
                        .collect(),
                }
            })
            .collect()
    }

    /// The status the metrics record: a dry run deleted nothing, so it is
    /// no retention success.
    pub fn metrics_status(&self) -> RunLabel {
        match self.dry_run {
            true => RunLabel::DryRun,
            false => RunLabel::Finished(self.status),
        }
    }
}

/// Erasure items shown by name in a summary; the rest are counted.
const ERASED_SHOWN: usize = 1000;

impl ErasureOutcome {
    /// Takes note of one planned item of the subject's.
    pub(super) fn note(&mut self, item: &Planned) {
        if item.action != Action::Delete {
            self.protected.push(protection(item));
            return;
        }
        // What the erasure leaves because something else claims it.
        self.protected.extend(item.kept.iter().map(|k| Protected {
            store: item.store.clone(),
            key: k.key.clone(),
            basis: format!("not erased: {}", k.claim),
            until: None,
            reason: Some("claimed".into()),
        }));
        if self.erased.len() < ERASED_SHOWN {
            self.erased.push((item.store.clone(), item.key.clone()));
        }
        self.erasing += 1;
    }
}

/// Why an object of an erased subject was kept, as the receipt says it:
/// with its legal basis (GDPR Art. 17(3)), naming no case.
fn protection(item: &Planned) -> Protected {
    let (basis, until, reason) = match (item.action, item.code.as_str()) {
        (Action::Hold, _) => (
            "GDPR Art. 17(3)(e): establishment, exercise or defence of legal claims (a legal hold)"
                .to_string(),
            None,
            "held".to_string(),
        ),
        (Action::Keep, "retained") => (
            item.basis.clone().unwrap_or_default(),
            item.expires_at.map(crate::ledger::timestamp),
            "minimum".to_string(),
        ),
        (_, code) => (
            format!(
                "not erased yet: {}; it is reported for review",
                item.reason.trim_start_matches("kept: ")
            ),
            None,
            code.to_string(),
        ),
    };
    Protected {
        store: item.store.clone(),
        key: item.key.clone(),
        basis,
        until,
        reason: Some(reason),
    }
}
