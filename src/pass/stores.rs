//! Each configured store's part of a pass: opened (a store that cannot be
//! opened is reported and the others go on), its deletion mode established,
//! planned into its spool, executed.

use std::sync::{Arc, Mutex};

use tracing::{Instrument, error, info, info_span, warn};

use super::outcome::{ErasureOutcome, StoreOutcome};
use super::{PassError, open_store};
use crate::config::Settings;
use crate::decide::{Action, Orders, Planned};
use crate::execute::{self, Journal, Report};
use crate::plan::{PlanFailure, Progress, Scope, Spool, plan_store};
use crate::policy::Policy;
use crate::store::{DeletionStatement, Store};

/// One store during the pass: its outcome so far, and what the pass works with.
pub(super) struct StorePass {
    pub outcome: StoreOutcome,
    pub store: Option<Store>,
    pub spool: Option<Spool>,
}

/// Opens every configured store; one that cannot be opened is logged and
/// carries its error (nothing in it is deleted).
pub(super) fn open_all(settings: &Settings) -> Vec<StorePass> {
    settings
        .stores
        .iter()
        .map(|sc| {
            let (store, error) = match open_store(settings, sc) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            };
            let url = store
                .as_ref()
                .map(|s| s.display_url())
                .unwrap_or_else(|| crate::config::redact_url(&sc.url));
            if let Some(e) = &error {
                error!(store = %sc.name, error = %e, "store unavailable; nothing in it is deleted");
            }
            StorePass {
                outcome: StoreOutcome {
                    name: sc.name.clone(),
                    url,
                    stats: None,
                    error,
                    report: Report::default(),
                    deletion: DeletionStatement {
                        mode: "unknown".into(),
                        basis: "the store could not be opened".into(),
                    },
                    verification: store.as_ref().map(Store::verification),
                },
                store,
                spool: None,
            }
        })
        .collect()
}

/// What a delete really does in each store; a contradiction with what the
/// operator asserts stops the run before anything happens.
pub(super) async fn establish_deletion(
    passes: &mut [StorePass],
    settings: &Settings,
) -> Result<(), PassError> {
    for (p, sc) in passes.iter_mut().zip(&settings.stores) {
        let Some(store) = &p.store else { continue };
        let deletion = store
            .deletion_statement(sc.deletion_mode)
            .await
            .map_err(PassError::DeletionMode)?;
        if let Some(caveat) = deletion.caveat() {
            warn!(store = %p.outcome.name, deletion_mode = %deletion.mode, basis = %deletion.basis, caveat, "deletions in this store may be recoverable");
        }
        p.outcome.deletion = deletion;
    }
    Ok(())
}

/// What planning a store needs besides the store.
pub(super) struct Planning<'a> {
    pub policy: &'a Policy,
    pub orders: &'a Orders,
    pub now: chrono::DateTime<chrono::Utc>,
    pub scope: Scope<'a>,
    pub progress: &'a dyn Progress,
}

impl StorePass {
    /// Plans the store into a new spool. Returns the deletions due now that
    /// an approved plan did not contain. A store that cannot be listed keeps
    /// its error and no spool; a spool that cannot be written ends the pass.
    pub(super) async fn plan(
        &mut self,
        planning: &Planning<'_>,
        mut erasure: Option<&mut ErasureOutcome>,
    ) -> Result<u64, PassError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let span = info_span!("store", store = %self.outcome.name);
        let mut spool =
            Spool::new().map_err(PassError::spool("cannot create the plan spool file"))?;
        let result = plan_store(
            store,
            planning.policy,
            planning.orders,
            planning.now,
            planning.scope,
            planning.progress,
            &mut |item: &Planned| {
                if let Some(e) = erasure.as_deref_mut() {
                    e.note(item);
                }
                match item.action {
                    Action::Delete => spool.push(item),
                    _ => Ok(()),
                }
            },
        )
        .instrument(span.clone())
        .await;
        match result {
            Ok(plan) => {
                self.outcome.stats = Some(plan.stats);
                self.spool = Some(spool);
                Ok(plan.withheld)
            }
            Err(PlanFailure::Store(e)) => {
                span.in_scope(
                    || error!(error = %e, "listing failed; nothing in this store is deleted"),
                );
                self.outcome.error = Some(e);
                Ok(0)
            }
            Err(PlanFailure::Sink(e)) => Err(PassError::Spool {
                context: "cannot write or read back the plan spool; nothing was deleted",
                source: e,
            }),
        }
    }

    /// Executes the store's spooled deletions. Returns what the spool could
    /// not give back, if anything: it was not deleted, and is said.
    pub(super) async fn execute(
        &mut self,
        journal: &impl Journal,
        options: execute::Options,
    ) -> Result<Option<String>, PassError> {
        let (Some(store), Some(spool)) = (&self.store, self.spool.take()) else {
            return Ok(None);
        };
        let unread = Arc::new(Mutex::new(None));
        let items = spool
            .into_stream(unread.clone())
            .map_err(PassError::spool("cannot read the plan spool"))?;
        let span = info_span!("store", store = %self.outcome.name);
        let report = execute::execute(store, items, journal, options)
            .instrument(span.clone())
            .await;
        span.in_scope(|| {
            info!(
                recordings_deleted = report.recordings_deleted,
                objects_deleted = report.objects_deleted,
                bytes_deleted = report.bytes_deleted,
                failed = report.failed,
                by_purpose = ?report.deleted_by_purpose,
                "store done"
            )
        });
        self.outcome.report = report;
        let unread = unread.lock().ok().and_then(|mut u| u.take());
        if let Some(e) = &unread {
            span.in_scope(|| error!(error = %e, "the rest of this store's plan is not executed"));
        }
        Ok(unread)
    }
}
