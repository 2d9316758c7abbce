//! What a pass would do, without doing it: `lethe plan` (every store
//! planned into a sink, with the safety limits checked on the whole plan)
//! and the count of what a new legal hold covers. Neither takes the lease,
//! deletes or records anything.

use tracing::{Instrument, error, info_span};

use super::open_store;
use crate::config::Settings;
use crate::decide::{Action, Orders, Planned, StoreStats, check_safety};
use crate::hold::Hold;
use crate::plan::{PlanFailure, Progress, Quiet, Scope, plan_store, review_notices};
use crate::policy::Policy;
use crate::report::{Limits, PlanSink};

/// What a plan found beyond what it wrote to its sink.
#[derive(Debug, Default)]
pub struct Preview {
    /// A store's deletion mode contradicts lethe.toml: a run would refuse.
    pub contradiction: bool,
    /// A store could not be opened or listed.
    pub failed: bool,
    pub breaches: Vec<String>,
}

/// Plans every store at `now` into `sink`; each deletion is also handed to
/// `on_delete` (the approved-plan file). Only the sink's and `on_delete`'s
/// errors end it: a store that fails is reported in the sink.
pub async fn preview(
    settings: &Settings,
    policy: &Policy,
    orders: &Orders,
    now: chrono::DateTime<chrono::Utc>,
    progress: &dyn Progress,
    sink: &mut dyn PlanSink,
    on_delete: &mut dyn FnMut(&Planned) -> std::io::Result<()>,
) -> std::io::Result<Preview> {
    let mut notices = review_notices(&orders.holds, now);
    notices.extend(crate::request::late_notices(&orders.requests, now));
    notices.extend(
        policy
            .warnings()
            .into_iter()
            .map(|w| format!("policy: {w}")),
    );
    sink.begin(now, &policy.files, &notices)?;
    let mut found = Preview::default();
    let mut planned = Vec::new();
    for sc in &settings.stores {
        let span = info_span!("store", store = %sc.name);
        let store = open_store(settings, sc).map_err(|e| e.to_string());
        let url = store
            .as_ref()
            .map(|s| s.display_url())
            .unwrap_or_else(|_| crate::config::redact_url(&sc.url));
        let deletion = match &store {
            Ok(s) => Some(s.deletion_statement(sc.deletion_mode).await),
            Err(_) => None,
        };
        // A contradiction with lethe.toml is reported like a broken store; a run would refuse.
        let store = match &deletion {
            Some(Err(conflict)) => {
                found.contradiction = true;
                Err(conflict.clone())
            }
            _ => store,
        };
        sink.store_begin(
            &sc.name,
            &url,
            deletion.as_ref().and_then(|d| d.as_ref().ok()),
        )?;
        let result = match &store {
            Ok(store) => {
                plan_store(
                    store,
                    policy,
                    orders,
                    now,
                    Scope::default(),
                    progress,
                    &mut |item| {
                        if item.action == Action::Delete {
                            on_delete(item)?;
                        }
                        sink.item(item)
                    },
                )
                .instrument(span.clone())
                .await
            }
            Err(e) => Err(PlanFailure::Store(e.clone())),
        };
        match result {
            Ok(plan) => {
                sink.store_end(&plan.stats, None)?;
                planned.push((sc.name.clone(), plan.stats));
            }
            Err(PlanFailure::Store(e)) => {
                span.in_scope(|| error!(error = %e, "store failed; nothing in it is planned"));
                sink.store_end(&StoreStats::default(), Some(&e))?;
                found.failed = true;
            }
            Err(PlanFailure::Sink(e)) => return Err(e),
        }
    }
    found.breaches = check_safety(
        planned.iter().map(|(n, s)| (n.as_str(), s)),
        settings.safety,
    );
    sink.end(
        &found.breaches,
        Limits {
            max_deletions: settings.safety.max_deletions,
            max_fraction: settings.safety.max_fraction,
        },
    )?;
    Ok(found)
}

/// What a hold covers, counted by planning the stores it applies to.
#[derive(Debug, Default)]
pub struct Coverage {
    pub recordings: u64,
    /// The recordings with their sidecars (companions are held with them).
    pub objects: u64,
    /// Stores that could not be scanned, with why.
    pub unscanned: Vec<String>,
}

/// Counts what `hold` covers at the instant it was placed.
pub async fn hold_coverage(settings: &Settings, policy: &Policy, hold: &Hold) -> Coverage {
    let (mut recordings, mut objects) = (0u64, 0u64);
    let unscanned = scan_hold(settings, policy, hold, hold.placed_at, &mut |item| {
        if item.hold.as_deref() == Some(hold.case.as_str()) {
            recordings += 1;
            objects += 1 + item.sidecars.len() as u64;
        }
        Ok(())
    })
    .await;
    Coverage {
        recordings,
        objects,
        // The count above never fails.
        unscanned: unscanned
            .unwrap_or_default()
            .into_iter()
            .map(|(store, e)| format!("{store}: {e}"))
            .collect(),
    }
}

/// Plans the stores `hold` applies to at `now`, with only that hold in
/// force, handing every item to `each`. Returns the stores that could not
/// be scanned, with why; only `each`'s error ends it.
pub async fn scan_hold(
    settings: &Settings,
    policy: &Policy,
    hold: &Hold,
    now: chrono::DateTime<chrono::Utc>,
    each: &mut dyn FnMut(&Planned) -> std::io::Result<()>,
) -> std::io::Result<Vec<(String, String)>> {
    let orders = Orders::with_holds(vec![hold.clone()]);
    let mut unscanned = Vec::new();
    for sc in &settings.stores {
        if hold.store.as_ref().is_some_and(|s| *s != sc.name) {
            continue;
        }
        let store = match open_store(settings, sc) {
            Ok(s) => s,
            Err(e) => {
                unscanned.push((sc.name.clone(), e.to_string()));
                continue;
            }
        };
        let result = plan_store(
            &store,
            policy,
            &orders,
            now,
            Scope::default(),
            &Quiet,
            &mut *each,
        )
        .await;
        match result {
            Ok(_) => {}
            Err(PlanFailure::Store(e)) => unscanned.push((sc.name.clone(), e)),
            Err(PlanFailure::Sink(e)) => return Err(e),
        }
    }
    Ok(unscanned)
}
