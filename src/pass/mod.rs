//! A whole retention pass as library calls: what `lethe run`, `lethe erase`,
//! the daemon, the demo and the tests all drive.
//!
//! [`Setup::load`] reads what a pass needs beyond the settings (the policy,
//! checked against the stores, and the signing key); [`run`] carries a
//! [`Job`] out: the run lease, the clock check, the rebuild of a lost
//! certificate, the recovery of an interrupted run, the plan of every store
//! into a spool, the safety limits on the whole plan, execution, the run's
//! record and its certificate. It returns a typed [`RunOutcome`], or a
//! [`PassError`] when the pass could not start; it prints nothing and knows
//! no exit codes: the CLI maps the outcome to one and renders it through
//! `report`.

mod audit;
mod certify;
mod destination;
mod error;
mod leftovers;
mod orders;
mod outcome;
mod preflight;
mod preview;
mod run;
mod shards;
mod stores;

pub use audit::{AuditError, LedgerAudit, audit_ledger, check_absence};
pub use certify::{
    CertificateRow, CertifyError, Extras, Issue, StoreInfo, check_destination, restore,
};
pub use destination::Destination;
pub use error::{ErrorKind, PassError};
pub use orders::{orders_from, read_orders};
pub use outcome::{ApprovedSummary, ErasureOutcome, RunOutcome, RunStatus, StoreOutcome, Verdict};
pub use preflight::PreflightError;
pub use preview::{Coverage, Preview, hold_coverage, preview, scan_hold};
pub use run::{Job, Mode, RunContext, last_success, run};

use crate::certificate::Identity;
use crate::config::Settings;
use crate::policy::Policy;

/// What every pass needs, read and checked before anything is touched.
pub struct Setup {
    pub settings: Settings,
    pub policy: Policy,
    pub identity: Identity,
}

impl Setup {
    /// Reads the policy (checked against the configured stores) and the
    /// signing key. A dry run loads the key too: it checks everything a run
    /// would, except deleting and recording.
    pub fn load(settings: Settings) -> Result<Self, PassError> {
        let policy = load_policy(&settings)?;
        let identity = Identity::load(&settings.signing.key_path, &settings.signing.key_id)?;
        Ok(Self {
            settings,
            policy,
            identity,
        })
    }
}

/// Reads and validates the policies against the configured stores, and
/// logs the policy's warnings.
pub fn load_policy(settings: &Settings) -> Result<Policy, PassError> {
    let policy = Policy::load(&settings.policies_dir)?;
    let names: Vec<&str> = settings.stores.iter().map(|s| s.name.as_str()).collect();
    policy.check_stores(&names)?;
    for w in policy.warnings() {
        tracing::warn!(warning = %w, "policy warning");
    }
    Ok(policy)
}

/// Opens a configured store with lethe's own files protected.
pub fn open_store(
    settings: &Settings,
    store: &crate::config::StoreConfig,
) -> Result<crate::store::Store, crate::store::StoreError> {
    let mut opened = crate::store::Store::open(store)?;
    opened.protect(&settings.own_paths());
    Ok(opened)
}

/// An error and its causes on one line, each said once: the sources whose
/// text the one before already contains (sqlx and the key loader repeat
/// their source in their own message) are left out.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = Some(error);
    while let Some(e) = cause {
        let text = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = e.source();
    }
    parts.join(": ")
}
