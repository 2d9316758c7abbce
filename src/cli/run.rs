//! `lethe run`: one retention pass.
//!
//! Order: load config, policy and key (any problem: exit 2, nothing touched);
//! open the stores and the ledger; rebuild a lost certificate; record the run;
//! complete what an interrupted run left; plan every store into a spool;
//! check the safety limits on the whole plan (exceeded: exit 3, nothing
//! deleted); execute; record the run's end; certify. A store that fails is
//! reported and the others go on (exit 1).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::{Instrument, error, info, info_span, warn};

use super::certify::{self, StoreInfo};
use super::progress::Progress;
use super::{Exit, Failure, OrExit, Outcome, load_policy, load_settings, output_error};
use crate::certificate::Identity;
use crate::config::Settings;
use crate::decide::{Action, Planned, Shard, StoreStats, check_safety};
use crate::execute::{self, Report};
use crate::ledger::{Holder, Kind, Lease, Ledger, NewRow, timestamp};
use crate::plan::{ApprovedPlan, PlanFailure, Scope, Spool, plan_store};
use crate::policy::Policy;
use crate::report::bytes;
use crate::store::{DeletionStatement, Store};
use crate::telemetry::{StoreFigures, Telemetry};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One configured store's part of the run.
struct StorePass {
    name: String,
    url: String,
    store: Option<Store>,
    stats: Option<StoreStats>,
    spool: Option<Spool>,
    error: Option<String>,
    report: Report,
    /// How deletions end in this store, as the certificate will state it.
    deletion: DeletionStatement,
}

/// What a pass is for.
pub(crate) enum Mode {
    /// The scheduled retention pass; with an approved plan, only its items
    /// go; with a shard, only its share of the recordings is considered.
    Retention {
        approved: Option<ApprovedPlan>,
        shard: Option<Shard>,
    },
    /// A data subject's erasure request (GDPR Art. 17), carried out now.
    Erasure { subject: String, request: String },
}

impl Mode {
    fn erasure(&self) -> Option<(&str, &str)> {
        match self {
            Mode::Erasure { subject, request } => Some((subject, request)),
            Mode::Retention { .. } => None,
        }
    }

    fn approved(&self) -> Option<&ApprovedPlan> {
        match self {
            Mode::Retention { approved, .. } => approved.as_ref(),
            Mode::Erasure { .. } => None,
        }
    }

    fn shard(&self) -> Option<Shard> {
        match self {
            Mode::Retention { shard, .. } => *shard,
            Mode::Erasure { .. } => None,
        }
    }
}

pub(crate) async fn run(
    config: &Path,
    dry_run: bool,
    approved: Option<ApprovedPlan>,
    shard: Option<Shard>,
    ctx: &RunContext,
    out: &mut dyn Write,
) -> Outcome {
    let job = Job {
        mode: Mode::Retention { approved, shard },
        dry_run,
        ctx: ctx.clone(),
    };
    execute_mode(config, &job, out).await
}

/// What the caller of a run provides beyond the configuration.
#[derive(Clone, Default)]
pub(crate) struct RunContext {
    /// Where the run's figures go (a batch run's push or textfile; the daemon's `/metrics`).
    pub telemetry: Option<Telemetry>,
    /// Set by SIGTERM: finish the batch in progress, record the run as interrupted, certify.
    pub stop: Arc<AtomicBool>,
    /// Show a progress line (when stderr is a terminal and logs are text).
    pub progress: bool,
}

impl RunContext {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// One run to carry out.
pub(crate) struct Job {
    pub mode: Mode,
    pub dry_run: bool,
    pub ctx: RunContext,
}

/// `lethe run` and `lethe erase` share everything but what is planned and certified.
pub(crate) async fn execute_mode(config: &Path, job: &Job, out: &mut dyn Write) -> Outcome {
    let started = std::time::Instant::now();
    if let Some(t) = &job.ctx.telemetry {
        t.run_started();
        if let Mode::Retention { shard, .. } = &job.mode {
            seed_last_success(config, shard.map(|s| s.to_string()).as_deref(), t).await;
        }
    }
    let result = configured(config, job, out).await;
    // A pass that ran records its own figures; one that failed records the failure.
    if let (Err(f), Some(t)) = (&result, &job.ctx.telemetry) {
        t.record_run(&[], "failed", f.exit as i64, started.elapsed(), Utc::now());
    }
    result
}

/// Sets the last success from the ledger before the run, so that a run
/// that fails (even before it reaches the ledger) reports the previous
/// success, not 0. Without a readable ledger the gauge is left as it is.
pub(crate) async fn seed_last_success(config: &Path, shard: Option<&str>, telemetry: &Telemetry) {
    let Ok(settings) = Settings::load(config, &crate::config::EnvOverrides::from_process()) else {
        return;
    };
    if let Some(path) = crate::ledger::sqlite_path(&settings.database)
        && !path.exists()
    {
        return;
    }
    let found = match Ledger::open(&settings.database).await {
        Ok(ledger) => {
            let found = ledger.last_success(shard).await;
            ledger.close().await;
            found.map_err(anyhow::Error::new)
        }
        Err(e) => Err(anyhow::Error::new(e)),
    };
    match found {
        Ok(Some(at)) => telemetry.set_last_success(at),
        Ok(None) => {}
        Err(e) => {
            warn!(
                error = super::chain(&e),
                "cannot read the last success from the ledger"
            )
        }
    }
}

/// Loads the configuration, policy and key, then runs under the lease.
async fn configured(config: &Path, job: &Job, out: &mut dyn Write) -> Outcome {
    let dry_run = job.dry_run;
    let settings = load_settings(config)?;
    let policy = load_policy(&settings)?;
    warn_about_skew(&settings, out)?;
    // A dry run checks everything a run would except deleting and recording,
    // so it loads and checks the signing key too (and reads the ledger, which
    // must be reachable, for the orders in force); it signs nothing.
    let identity = Some(
        Identity::load(&settings.signing.key_path, &settings.signing.key_id)
            .or_exit(Exit::Usage)?,
    );
    let run_id = uuid::Uuid::new_v4().to_string();
    let span = info_span!("run", run_id = %run_id, dry_run);
    async move {
        info!(config = %settings.config_path.display(), database = %settings.database.redacted(), "run started");
        let result = locked(&settings, &policy, identity.as_ref(), &run_id, job, out).await;
        match &result {
            Ok(code) => info!(exit_code = *code as u8, "run finished"),
            Err(f) => error!(exit_code = f.exit as u8, error = super::chain(&f.error), "run failed"),
        }
        result
    }
    .instrument(span)
    .await
}

/// The largest `max_clock_skew` accepted without a warning.
const SKEW_WARNING: Duration = Duration::from_secs(3600);

/// A `max_clock_skew` beyond an hour is allowed, but said in the log and in
/// the run's output: it lets a machine whose clock is that far from the
/// database's run, and stamp the ledger and certificates with its time.
fn warn_about_skew(settings: &Settings, out: &mut dyn Write) -> Result<(), Failure> {
    let skew = settings.safety.max_clock_skew;
    if skew <= SKEW_WARNING {
        return Ok(());
    }
    let text = format!(
        "[safety] max_clock_skew is {} s, more than an hour: a machine whose clock is that far from the database's may run, and its times go into the ledger and certificates",
        skew.as_secs()
    );
    warn!(max_clock_skew_seconds = skew.as_secs(), "{text}");
    writeln!(out, "WARNING: {text}").map_err(output_error)
}

/// How long a run's lease lasts without renewal; it is renewed every third of it.
const LEASE_TTL: Duration = Duration::from_secs(120);

/// Opens the ledger, takes the run lease, checks this machine's clock against
/// the database's, runs the pass, and gives the lease back. A dry run needs
/// none of it.
async fn locked(
    settings: &Settings,
    policy: &Policy,
    identity: Option<&Identity>,
    run_id: &str,
    job: &Job,
    out: &mut dyn Write,
) -> Outcome {
    let mode = &job.mode;
    if job.dry_run {
        return pass(
            settings,
            policy,
            identity,
            run_id,
            None,
            Utc::now(),
            job,
            out,
        )
        .await;
    }
    let ledger = Ledger::open(&settings.database)
        .await
        .context("nothing was deleted")
        .or_exit(Exit::Runtime)?;
    let lease = ledger
        .acquire_lease(
            &mode
                .shard()
                .map_or(crate::ledger::RETENTION_LEASE.to_string(), |s| {
                    s.lease_name()
                }),
            &Holder::this_process(run_id),
            LEASE_TTL,
        )
        .await
        .map_err(|e| Failure {
            exit: Exit::Runtime,
            error: anyhow::Error::new(e),
        })?;
    info!(epoch = lease.epoch, until = %lease.expires_at, "run lease taken");
    let result = match clock(&ledger, settings.safety.max_clock_skew).await {
        Ok(now) => {
            // Renew the lease in the background; if it is lost, fencing stops
            // new deletions at the next intent transaction.
            let renewal = {
                let (ledger, lease) = (ledger.clone(), lease.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(LEASE_TTL / 3).await;
                        if let Err(e) = ledger.renew_lease(&lease, LEASE_TTL).await {
                            error!(error = %e, "cannot renew the run lease");
                            break;
                        }
                    }
                })
            };
            let result = pass(
                settings,
                policy,
                identity,
                run_id,
                Some((&ledger, lease.clone())),
                now,
                job,
                out,
            )
            .await;
            renewal.abort();
            result
        }
        Err(f) => Err(f),
    };
    if let Err(e) = ledger.release_lease(&lease).await {
        warn!(error = %e, "cannot give the run lease back; it expires by itself");
    }
    ledger.close().await;
    result
}

/// "Now" is the database's clock, the one every worker shares; a machine
/// whose own clock is too far from it is not trusted to delete.
async fn clock(ledger: &Ledger, max_skew: Duration) -> Result<DateTime<Utc>, Failure> {
    let db_now = ledger
        .now()
        .await
        .context("cannot read the database's clock; nothing was deleted")
        .or_exit(Exit::Runtime)?;
    let skew = (Utc::now() - db_now).abs();
    if skew.to_std().unwrap_or(Duration::MAX) > max_skew {
        return Err(Failure {
            exit: Exit::Safety,
            error: anyhow::anyhow!(
                "this machine's clock differs from the database's by {} s, more than max_clock_skew ({} s); nothing was deleted",
                skew.num_seconds(),
                max_skew.as_secs()
            ),
        });
    }
    Ok(db_now)
}

#[allow(clippy::too_many_arguments)]
async fn pass(
    settings: &Settings,
    policy: &Policy,
    identity: Option<&Identity>,
    run_id: &str,
    ledger: Option<(&Ledger, Lease)>,
    now: DateTime<Utc>,
    job: &Job,
    out: &mut dyn Write,
) -> Outcome {
    let mode = &job.mode;
    let clock = std::time::Instant::now();
    let dry_run = ledger.is_none();
    let (ledger, lease) = match ledger {
        Some((l, lease)) => (Some(l), Some(lease)),
        None => (None, None),
    };
    let pass_id = lease.as_ref().and_then(|l| l.holder.pass.clone());
    let journal = ledger
        .zip(lease)
        .map(|(l, lease)| l.fenced_journal(run_id, lease));
    let started_at = now;
    let mut passes: Vec<StorePass> = settings
        .stores
        .iter()
        .map(|sc| {
            let (store, error) = match super::open_store(settings, sc) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            };
            let url = store
                .as_ref()
                .map(|s| s.display_url())
                .unwrap_or_else(|| crate::config::redact_url(&sc.url));
            StorePass {
                name: sc.name.clone(),
                url,
                store,
                stats: None,
                spool: None,
                error,
                report: Report::default(),
                deletion: DeletionStatement {
                    mode: "unknown".into(),
                    basis: "the store could not be opened".into(),
                },
            }
        })
        .collect();
    for p in &passes {
        if let Some(e) = &p.error {
            error!(store = %p.name, error = %e, "store unavailable; nothing in it is deleted");
        }
    }
    // What a delete really does in each store; a contradiction with what the
    // operator asserts stops the run before anything happens.
    for (p, sc) in passes.iter_mut().zip(&settings.stores) {
        let Some(store) = &p.store else { continue };
        p.deletion = store
            .deletion_statement(sc.deletion_mode)
            .await
            .map_err(|conflict| Failure {
                exit: Exit::Usage,
                error: anyhow::anyhow!("{conflict}; nothing was deleted"),
            })?;
        if let Some(caveat) = p.deletion.caveat() {
            warn!(store = %p.name, deletion_mode = %p.deletion.mode, basis = %p.deletion.basis, caveat, "deletions in this store may be recoverable");
        }
    }

    let mut problems: Vec<String> = Vec::new();
    let destination = match dry_run {
        true => None,
        false => Some(
            certify::Destination::open(settings)
                .context("nothing was deleted")
                .or_exit(Exit::Runtime)?,
        ),
    };
    let run_rows = |k: Kind, body: serde_json::Value| {
        vec![NewRow {
            kind: k,
            run_id: run_id.to_string(),
            store: None,
            key: None,
            ref_seq: None,
            body,
        }]
    };

    let mut recovered = Report::default();
    if let (Some(ledger), Some(identity)) = (&ledger, identity) {
        let destination = destination.as_ref().expect("opened with the ledger");
        if let Err(refusal) = certify::check_destination(ledger, destination)
            .await
            .context("cannot read the certificate destination; nothing was deleted")
            .or_exit(Exit::Runtime)?
        {
            return Err(Failure {
                exit: Exit::Usage,
                error: anyhow::anyhow!(refusal),
            });
        }
        match certify::restore(ledger, identity, destination).await {
            Ok(Some(location)) => {
                info!(location = %location, "rebuilt the last certificate's files from the ledger")
            }
            Ok(None) => {}
            Err(e) => {
                error!(
                    error = format!("{e:#}"),
                    "cannot rebuild the last certificate"
                );
                problems.push(format!("{e:#}"));
            }
        }
        if mode.erasure().is_some() && ledger.has_uncertified().await.or_exit(Exit::Runtime)? {
            return Err(Failure {
                exit: Exit::Runtime,
                error: anyhow::anyhow!(
                    "the ledger holds deletions of an interrupted run that no certificate covers yet; run `lethe run` first (it completes and certifies them), then repeat the erasure; nothing was deleted"
                ),
            });
        }
        let body = json!({
            "started_at": timestamp(started_at),
            "purpose": if mode.erasure().is_some() { "erasure" } else { "retention" },
            "approved_plan_sha256": mode.approved().map(|a| a.sha256.clone()),
            "shard": mode.shard().map(|s| s.to_string()),
            "tool": {"name": "lethe", "version": env!("CARGO_PKG_VERSION")},
            "policies": policy.files.iter().map(|f| json!({"file": f.name, "sha256": f.sha256})).collect::<Vec<_>>(),
            "stores": passes.iter().map(|p| json!({"name": p.name, "url": p.url})).collect::<Vec<_>>(),
        });
        ledger
            .append(run_rows(Kind::RunStarted, body))
            .await
            .context("cannot record the run; nothing was deleted")
            .or_exit(Exit::Runtime)?;

        // Intents of a run that still holds a lease (a concurrent shard) are
        // in flight, not interrupted: only the others are completed here.
        let live = ledger
            .live_runs()
            .await
            .context("cannot read the run leases")
            .or_exit(Exit::Runtime)?;
        let pending: Vec<_> = ledger
            .pending()
            .await
            .context("cannot read interrupted deletions")
            .or_exit(Exit::Runtime)?
            .into_iter()
            .filter(|p| p.run_id == run_id || !live.contains(&p.run_id))
            .collect();
        if !pending.is_empty() {
            warn!(
                count = pending.len(),
                "completing deletions an interrupted run left unfinished"
            );
            let stores: HashMap<String, Store> = passes
                .iter()
                .filter_map(|p| p.store.clone().map(|s| (p.name.clone(), s)))
                .collect();
            recovered = execute::recover(
                &stores,
                pending,
                journal.as_ref().expect("a journal with the ledger"),
            )
            .await;
            if let Some(a) = &recovered.aborted {
                problems.push(a.clone());
            }
        }
    }

    // Plan every store into its spool: the safety limits need the whole plan.
    // Holds are read now for the plan, and again in every intent transaction.
    let mut orders = match &ledger {
        Some(l) => super::orders_from(l).await?,
        None => super::read_orders(settings).await?,
    };
    if let Some((subject, request)) = mode.erasure() {
        let digest = crate::hold::subject_digest(subject);
        if let Some(l) = ledger {
            // Recorded before anything is deleted: even if this run stops
            // half-way, later runs erase the rest of the subject's recordings.
            l.record_erasure(run_id, request, &digest, now)
                .await
                .map_err(|e| match e {
                    crate::ledger::LedgerError::RequestReused(_) => Failure {
                        exit: Exit::Usage,
                        error: e.into(),
                    },
                    other => Failure {
                        exit: Exit::Runtime,
                        error: anyhow::Error::new(other).context("nothing was deleted"),
                    },
                })?;
        }
        orders.erasures.insert(digest.clone(), request.to_string());
        orders.only_subject = Some(digest);
    }
    let mut protected: Vec<crate::certificate::Protected> = Vec::new();
    // The subject's recordings to erase: a sample to show, and how many.
    let mut erased: Vec<(String, String)> = Vec::new();
    let mut erasing_count = 0u64;
    let mut not_approved = 0u64;
    let now = started_at;
    let mut interrupted = false;
    let mut progress = if job.ctx.progress {
        Progress::new()
    } else {
        Progress::hidden()
    };
    for p in passes.iter_mut() {
        if job.ctx.stopping() {
            // Stopped while planning: nothing of this store was deleted.
            interrupted = true;
            break;
        }
        let Some(store) = &p.store else { continue };
        let span = info_span!("store", store = %p.name);
        let mut spool = Spool::new()
            .context("cannot create the plan spool file")
            .or_exit(Exit::Runtime)?;
        let erasing = mode.erasure().is_some();
        let scope = Scope {
            shard: mode.shard(),
            // With an approved plan, a deletion due now but not approved waits.
            approved: mode.approved(),
        };
        let result = plan_store(
            store,
            policy,
            &orders,
            now,
            scope,
            &progress,
            &mut |item: &Planned| {
                if item.action == Action::Delete {
                    if erasing {
                        // What the erasure leaves because something else claims it.
                        protected.extend(item.kept.iter().map(|k| crate::certificate::Protected {
                            store: item.store.clone(),
                            key: k.key.clone(),
                            basis: format!("not erased: {}", k.claim),
                            until: None,
                            reason: Some("claimed".into()),
                        }));
                        if erased.len() < ERASED_SHOWN {
                            erased.push((item.store.clone(), item.key.clone()));
                        }
                        erasing_count += 1;
                    }
                    spool.push(item)
                } else {
                    if erasing {
                        protected.push(protection(item));
                    }
                    Ok(())
                }
            },
        )
        .instrument(span.clone())
        .await;
        match result {
            Ok(plan) => {
                not_approved += plan.withheld;
                p.stats = Some(plan.stats);
                p.spool = Some(spool);
            }
            Err(PlanFailure::Store(e)) => {
                span.in_scope(
                    || error!(error = %e, "listing failed; nothing in this store is deleted"),
                );
                p.error = Some(e);
            }
            Err(PlanFailure::Sink(e)) => {
                return Err(Failure {
                    exit: Exit::Runtime,
                    error: anyhow::Error::new(e)
                        .context("cannot write the plan spool; nothing was deleted"),
                });
            }
        }
    }
    // An erasure concerns one subject: max_fraction of a store is no measure
    // of it, max_deletions still is.
    let limits = match mode {
        Mode::Retention { .. } => settings.safety,
        Mode::Erasure { .. } => crate::config::Safety {
            max_fraction: 1.0,
            ..settings.safety
        },
    };
    // The limits are a property of the pass, not of a shard: the shards of
    // a pass record their plans' counts and check the limits on the sum,
    // once all of them have planned, before any of them deletes.
    let whole_pass = match (mode.shard(), ledger, &pass_id) {
        (Some(shard), Some(l), Some(pass)) if !interrupted => Some(
            whole_pass(
                l,
                run_id,
                pass,
                shard,
                &passes,
                settings.safety.shard_wait,
                &job.ctx,
            )
            .await?,
        ),
        _ => None,
    };
    let mut breaches = match &whole_pass {
        Some(Ok(totals)) => check_safety(totals.iter().map(|(n, s)| (n.as_str(), s)), limits)
            .into_iter()
            .map(|b| {
                format!(
                    "the pass of {} shards: {b}",
                    mode.shard().map_or(1, |s| s.count)
                )
            })
            .collect(),
        _ => check_safety(
            passes
                .iter()
                .filter_map(|p| p.stats.as_ref().map(|s| (p.name.as_str(), s))),
            limits,
        ),
    };
    if let Some(Err(waited)) = whole_pass {
        breaches.push(waited);
    }
    for b in &breaches {
        error!(limit = %b, "safety limit exceeded; nothing is deleted");
    }

    if !dry_run && breaches.is_empty() {
        let journal = journal.as_ref().expect("a journal with the ledger");
        for p in passes.iter_mut() {
            let (Some(store), Some(spool)) = (&p.store, p.spool.take()) else {
                continue;
            };
            let unread = Arc::new(std::sync::Mutex::new(None));
            let items = spool
                .into_stream(unread.clone())
                .context("cannot read the plan spool")
                .or_exit(Exit::Runtime)?;
            let span = info_span!("store", store = %p.name);
            let options = execute::Options {
                stop: Some(job.ctx.stop.clone()),
                progress: progress.deletions(),
                ..Default::default()
            };
            progress.store(&p.name);
            p.report = execute::execute(store, items, journal, options)
                .instrument(span.clone())
                .await;
            span.in_scope(|| {
                info!(
                    recordings_deleted = p.report.recordings_deleted,
                    objects_deleted = p.report.objects_deleted,
                    bytes_deleted = p.report.bytes_deleted,
                    failed = p.report.failed,
                    by_purpose = ?p.report.deleted_by_purpose,
                    "store done"
                )
            });
            if let Some(e) = unread.lock().ok().and_then(|mut u| u.take()) {
                // What the spool could not give back was not deleted: said, never skipped.
                span.in_scope(
                    || error!(error = %e, "the rest of this store's plan is not executed"),
                );
                problems.push(format!(
                    "store {}: {e}; the rest of its plan was not executed",
                    p.name
                ));
            }
            if let Some(a) = &p.report.aborted {
                problems.push(a.clone());
                break;
            }
        }
    }

    progress.finish();
    // A sidecar the store failed to give kept its recording: safe, but the
    // run did not do its work, and says so (the next run tries again).
    for p in &passes {
        let failed_reads = p.stats.as_ref().and_then(|s| {
            s.report_by_code
                .get(crate::classify::SIDECAR_READ_FAILED)
                .copied()
        });
        if let Some(n) = failed_reads {
            problems.push(format!(
                "store {}: {n} sidecars could not be read from the store; their recordings were kept and the next run tries again",
                p.name
            ));
        }
    }
    let failures = passes
        .iter()
        .any(|p| p.error.is_some() || p.report.failed > 0)
        || recovered.failed > 0
        || !problems.is_empty();
    let interrupted = interrupted || passes.iter().any(|p| p.report.interrupted);
    let status = if !breaches.is_empty() {
        "stopped-by-safety-limit"
    } else if interrupted {
        "interrupted"
    } else if passes.iter().any(|p| p.report.aborted.is_some()) || recovered.aborted.is_some() {
        "failed"
    } else if failures {
        "completed-with-failures"
    } else {
        "completed"
    };

    let mut certificate = None;
    // One instant for the ledger's end of run and the metrics' last success,
    // so that the success a later run reads back from the ledger is this one.
    let finished_at = Utc::now();
    if let (Some(ledger), Some(identity)) = (&ledger, identity) {
        let body = json!({
            "finished_at": timestamp(finished_at),
            "status": status,
            "safety_breaches": breaches,
            "stores": passes.iter().map(|p| json!({
                "name": p.name,
                "error": p.error,
                "planned": p.stats,
                "recordings_deleted": p.report.recordings_deleted,
                "objects_deleted": p.report.objects_deleted,
                "failed": p.report.failed,
            })).collect::<Vec<_>>(),
        });
        match ledger.append(run_rows(Kind::RunFinished, body)).await {
            Ok(_) => {
                let infos: Vec<StoreInfo> = passes
                    .iter()
                    .map(|p| StoreInfo {
                        name: p.name.clone(),
                        url: p.url.clone(),
                        deletion: p.deletion.clone(),
                    })
                    .collect();
                match certify::certify(
                    ledger,
                    identity,
                    destination.as_ref().expect("opened with the ledger"),
                    run_id,
                    &policy.files,
                    &infos,
                    certify::Extras {
                        erasure: mode.erasure().map(|(subject, request)| {
                            crate::certificate::Erasure {
                                request: request.to_string(),
                                subject_sha256: crate::hold::subject_digest(subject),
                                protected: protected.clone(),
                                later_recordings: crate::certificate::LATER_RECORDINGS.into(),
                                notice: (erasing_count == 0 && protected.is_empty())
                                    .then(|| crate::certificate::NOTHING_FOUND.to_string()),
                            }
                        }),
                        approved_plan_sha256: mode.approved().map(|a| a.sha256.clone()),
                    },
                )
                .await
                {
                    Ok(path) => certificate = Some(path),
                    Err(e) => {
                        error!(
                            error = format!("{e:#}"),
                            "cannot issue the certificate; the next run certifies these deletions"
                        );
                        problems.push(format!("certificate: {e:#}"));
                    }
                }
            }
            Err(e) => problems.push(format!("cannot record the end of the run: {e}")),
        }
    }

    summary(
        out,
        run_id,
        dry_run,
        status,
        &passes,
        &recovered,
        &breaches,
        &problems,
        certificate.as_deref(),
    )
    .map_err(output_error)?;
    if let Some(a) = mode.approved() {
        writeln!(
            out,
            "approved plan sha256:{}: {} deletions approved; {not_approved} deletions due now were not in it and wait for approval",
            a.sha256, a.items
        )
        .map_err(output_error)?;
    }
    if let Some((_, request)) = mode.erasure() {
        if erasing_count == 0 && protected.is_empty() {
            warn!(request = %request, "the erasure found nothing of the subject in any store");
        }
        let erasure = ErasureSummary {
            request,
            dry_run,
            protected: &protected,
            erased: &erased,
            erasing: erasing_count,
        };
        erasure_summary(out, &erasure, certificate.as_deref()).map_err(output_error)?;
    }
    let exit = if !breaches.is_empty() {
        Exit::Safety
    } else if interrupted || failures || !problems.is_empty() || (certificate.is_none() && !dry_run)
    {
        Exit::Runtime
    } else {
        Exit::Success
    };
    if let Some(t) = &job.ctx.telemetry {
        let figures: Vec<StoreFigures> = passes
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
                    unclassified: stats.report,
                }
            })
            .collect();
        // A dry run deleted nothing: it is no retention success.
        let status = if dry_run { "dry-run" } else { status };
        t.record_run(&figures, status, exit as i64, clock.elapsed(), finished_at);
    }
    Ok(exit)
}

/// Records this shard's plan and waits until every shard of its pass has
/// recorded one; returns the pass's totals per store, or (as a safety
/// breach: nothing is deleted) why they could not be had in time.
async fn whole_pass(
    ledger: &Ledger,
    run_id: &str,
    pass: &str,
    shard: Shard,
    passes: &[StorePass],
    wait: Duration,
    ctx: &RunContext,
) -> Result<Result<Vec<(String, StoreStats)>, String>, Failure> {
    let plan = crate::ledger::ShardPlan {
        pass: pass.to_string(),
        shard: shard.index,
        of: shard.count,
        stores: passes
            .iter()
            .filter_map(|p| {
                let s = p.stats.as_ref()?;
                Some((p.name.clone(), (s.delete, s.recordings)))
            })
            .collect(),
    };
    ledger
        .record_shard_plan(run_id, &plan)
        .await
        .context("cannot record this shard's plan; nothing was deleted")
        .or_exit(Exit::Runtime)?;
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        let plans = ledger
            .shard_plans(pass)
            .await
            .context("cannot read the other shards' plans; nothing was deleted")
            .or_exit(Exit::Runtime)?;
        if plans.len() as u32 >= shard.count {
            let mut totals: std::collections::BTreeMap<String, StoreStats> = Default::default();
            for p in plans.values() {
                for (store, (delete, recordings)) in &p.stores {
                    let t = totals.entry(store.clone()).or_default();
                    t.delete += delete;
                    t.recordings += recordings;
                }
            }
            info!(
                pass,
                shards = shard.count,
                "every shard of the pass has planned"
            );
            return Ok(Ok(totals.into_iter().collect()));
        }
        if started.elapsed() >= wait || ctx.stopping() {
            let missing: Vec<String> = (0..shard.count)
                .filter(|i| !plans.contains_key(i))
                .map(|i| format!("{i}/{}", shard.count))
                .collect();
            return Ok(Err(format!(
                "shards {} of this pass did not plan within {} (shard_wait), so the pass's size is unknown; run all {} shards at once (an Indexed Job with parallelism = completions)",
                missing.join(", "),
                humantime::format_duration(wait),
                shard.count
            )));
        }
        if !said {
            info!(
                pass,
                shards = shard.count,
                planned = plans.len(),
                "waiting for the other shards of the pass to plan"
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Erasure items shown by name in a summary; the rest are counted.
const ERASED_SHOWN: usize = 1000;

/// Why an object of an erased subject was kept, as the receipt says it:
/// with its legal basis (GDPR Art. 17(3)), naming no case.
fn protection(item: &Planned) -> crate::certificate::Protected {
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
    crate::certificate::Protected {
        store: item.store.clone(),
        key: item.key.clone(),
        basis,
        until,
        reason: Some(reason),
    }
}

struct ErasureSummary<'a> {
    request: &'a str,
    dry_run: bool,
    protected: &'a [crate::certificate::Protected],
    /// A sample of the recordings erased (or, in a dry run, to erase).
    erased: &'a [(String, String)],
    erasing: u64,
}

fn erasure_summary(
    out: &mut dyn Write,
    e: &ErasureSummary<'_>,
    receipt: Option<&str>,
) -> std::io::Result<()> {
    let verb = if e.dry_run { "would erase" } else { "erasing" };
    writeln!(
        out,
        "erasure request {}: {verb} {} of the subject's recordings; {} of the subject's objects kept",
        e.request,
        e.erasing,
        e.protected.len()
    )?;
    if e.erasing == 0 && e.protected.is_empty() {
        writeln!(out, "  WARNING: {}", crate::certificate::NOTHING_FOUND)?;
    }
    let mut by_reason: std::collections::BTreeMap<&str, u64> = Default::default();
    for p in e.protected {
        *by_reason
            .entry(p.reason.as_deref().unwrap_or("-"))
            .or_default() += 1;
    }
    if !by_reason.is_empty() {
        let by: Vec<String> = by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(out, "  kept by reason: {}", by.join(", "))?;
    }
    if e.dry_run {
        for (store, key) in e.erased {
            writeln!(
                out,
                "  would erase {store}: {}",
                crate::report::printable(key)
            )?;
        }
        if e.erasing > e.erased.len() as u64 {
            writeln!(out, "  ... and {} more", e.erasing - e.erased.len() as u64)?;
        }
    }
    for p in e.protected {
        let until = p
            .until
            .as_ref()
            .map(|u| format!(" until {u}"))
            .unwrap_or_default();
        writeln!(
            out,
            "  kept {}: {}  ({}{until})",
            p.store,
            crate::report::printable(&p.key),
            crate::report::printable(&p.basis)
        )?;
    }
    if !e.dry_run {
        writeln!(out, "  {}", crate::certificate::LATER_RECORDINGS)?;
    }
    if let Some(r) = receipt {
        writeln!(out, "erasure receipt: {r}")?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn summary(
    out: &mut dyn Write,
    run_id: &str,
    dry_run: bool,
    status: &str,
    passes: &[StorePass],
    recovered: &Report,
    breaches: &[String],
    problems: &[String],
    certificate: Option<&str>,
) -> std::io::Result<()> {
    if dry_run {
        writeln!(out, "dry run {run_id}: nothing was deleted or recorded")?;
    } else {
        writeln!(out, "run {run_id}: {status}")?;
    }
    if recovered.recordings_deleted + recovered.objects_deleted + recovered.failed > 0 {
        writeln!(
            out,
            "  completed an interrupted run: {} recordings, {} objects certified now; {} could not be completed",
            recovered.recordings_deleted, recovered.objects_deleted, recovered.failed
        )?;
    }
    for p in passes {
        write!(out, "  store {} ({}): ", p.name, p.url)?;
        let caveat = p.deletion.caveat().map(|c| {
            format!(
                "    WARNING: {c} (deletions: {}, {})",
                p.deletion.mode, p.deletion.basis
            )
        });
        if let Some(e) = &p.error {
            writeln!(out, "FAILED: {e}")?;
            continue;
        }
        let stats = p.stats.clone().unwrap_or_default();
        if dry_run || !breaches.is_empty() {
            writeln!(
                out,
                "would delete {} recordings ({}); {} kept, {} held, {} reported",
                stats.delete,
                bytes(stats.delete_bytes),
                stats.keep,
                stats.held,
                stats.report
            )?;
        } else {
            let r = &p.report;
            writeln!(
                out,
                "deleted {} recordings ({} objects, {}); {} already absent; {} failed; {} kept, {} held, {} reported",
                r.recordings_deleted,
                r.objects_deleted,
                bytes(r.bytes_deleted),
                r.already_absent,
                r.failed,
                stats.keep,
                stats.held + r.held,
                stats.report
            )?;
            if !r.deleted_by_purpose.is_empty() {
                let by: Vec<String> = r
                    .deleted_by_purpose
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                writeln!(out, "    deleted by purpose: {}", by.join(", "))?;
            }
            for f in &r.failures {
                writeln!(out, "    failed: {f}")?;
            }
        }
        if let Some(c) = caveat {
            writeln!(out, "{c}")?;
        }
        if !stats.report_by_code.is_empty() {
            let by: Vec<String> = stats
                .report_by_code
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(
                out,
                "    reported (kept, see `lethe plan`): {}",
                by.join(", ")
            )?;
        }
    }
    for b in breaches {
        writeln!(out, "  STOPPED by a safety limit, nothing was deleted: {b}")?;
    }
    for p in problems {
        writeln!(out, "  problem: {p}")?;
    }
    if let Some(c) = certificate {
        writeln!(out, "certificate: {c}")?;
    }
    Ok(())
}
