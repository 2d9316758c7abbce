//! One run: the retention pass or an erasure.
//!
//! Order: take the run lease and check this machine's clock against the
//! database's; open the stores and establish how deletions end in each;
//! remove the temporaries killed runs left (`leftovers`); prove the run can write its evidence (`preflight`: the certificate
//! destination, the manifest staging folder, the signing key; the ledger by
//! recording the run); rebuild a lost certificate; record the run; complete
//! what an interrupted run left; plan every store into a spool; check the
//! safety limits on the whole plan (of every shard of the pass); execute;
//! record the run's end; certify. A store that fails is reported and the
//! others go on. A dry run does everything but take the lease, the
//! preflight, delete, record and certify.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{Instrument, error, info, info_span, warn};

use super::certify::{CertifyError, Extras, Issue, StoreInfo, check_destination, restore};
use super::destination::Destination;
use super::outcome::{ApprovedSummary, ErasureOutcome, RunOutcome, RunStatus};
use super::shards::whole_pass;
use super::stores::{self, Planning, StorePass};
use super::{PassError, Setup, chain, orders_from, read_orders};
use super::{leftovers, preflight};
use crate::clock::{Anchored, SharedClock, SystemClock};
use crate::decide::{Orders, Shard, check_safety};
use crate::execute::{self, Report};
use crate::ledger::{
    Event, Holder, Lease, Ledger, PolicyRef, Purpose, RunFinished, RunJournal, RunStarted,
    StoreFinished, StoreRef, Tool,
};
use crate::plan::{ApprovedPlan, Progress, Quiet, Scope};

/// What a pass is for.
pub enum Mode {
    /// The scheduled retention pass; with an approved plan, only its items
    /// go; with a shard, only its share of the recordings is considered.
    Retention {
        approved: Option<ApprovedPlan>,
        shard: Option<Shard>,
    },
    /// A data subject's erasure request (GDPR Art. 17), carried out now.
    Erasure {
        subject: String,
        request: String,
        /// When the request was received, if before this run (Art. 12(3)
        /// counts from then); a request registered earlier keeps its own.
        received: Option<DateTime<Utc>>,
    },
}

impl Mode {
    pub fn erasure(&self) -> Option<(&str, &str)> {
        match self {
            Mode::Erasure {
                subject, request, ..
            } => Some((subject, request)),
            Mode::Retention { .. } => None,
        }
    }

    /// When an erasure request was received, if the command said.
    pub fn received(&self) -> Option<DateTime<Utc>> {
        match self {
            Mode::Erasure { received, .. } => *received,
            Mode::Retention { .. } => None,
        }
    }

    pub fn approved(&self) -> Option<&ApprovedPlan> {
        match self {
            Mode::Retention { approved, .. } => approved.as_ref(),
            Mode::Erasure { .. } => None,
        }
    }

    pub fn shard(&self) -> Option<Shard> {
        match self {
            Mode::Retention { shard, .. } => *shard,
            Mode::Erasure { .. } => None,
        }
    }
}

/// What the caller of a run provides beyond the configuration.
#[derive(Clone)]
pub struct RunContext<'a> {
    /// Set by SIGTERM: finish the batch in progress, record the run as interrupted, certify.
    pub stop: Arc<AtomicBool>,
    /// Told what is scanned and deleted, for a progress display.
    pub progress: &'a dyn Progress,
}

impl Default for RunContext<'_> {
    fn default() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            progress: &Quiet,
        }
    }
}

impl RunContext<'_> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// One run to carry out.
pub struct Job<'a> {
    pub mode: Mode,
    pub dry_run: bool,
    pub ctx: RunContext<'a>,
}

/// Carries out one run, in a span named by a new run id.
pub async fn run(setup: &Setup, job: &Job<'_>) -> Result<RunOutcome, PassError> {
    let run_id = uuid::Uuid::new_v4().to_string();
    let span = info_span!("run", run_id = %run_id, dry_run = job.dry_run);
    async move {
        info!(config = %setup.settings.config_path.display(), database = %setup.settings.database.redacted(), "run started");
        let result = locked(setup, &run_id, job).await;
        match &result {
            Ok(o) => info!(status = %o.status, verdict = ?o.verdict(), "run finished"),
            Err(e) => error!(error = chain(e), "run failed"),
        }
        result
    }
    .instrument(span)
    .await
}

/// The last successful run's end, from the ledger; `None` without a ledger.
pub async fn last_success(
    settings: &crate::config::Settings,
    shard: Option<&str>,
) -> Result<Option<DateTime<Utc>>, crate::ledger::LedgerError> {
    if let Some(path) = crate::ledger::sqlite_path(&settings.database)
        && !path.exists()
    {
        return Ok(None);
    }
    let ledger = Ledger::open(&settings.database).await?;
    let found = ledger.last_success(shard).await;
    ledger.close().await;
    found
}

/// How long a run's lease lasts without renewal; it is renewed every third of it.
const LEASE_TTL: Duration = Duration::from_secs(120);

/// Opens the ledger, takes the run lease, checks this machine's clock against
/// the database's, runs the pass, and gives the lease back. A dry run needs
/// none of it.
async fn locked(setup: &Setup, run_id: &str, job: &Job<'_>) -> Result<RunOutcome, PassError> {
    if job.dry_run {
        let clock = Arc::new(Anchored::new(SystemClock::read()));
        return Pass::new(setup, job, run_id, None, clock)?.go().await;
    }
    let settings = &setup.settings;
    let ledger = Ledger::open(&settings.database)
        .await
        .map_err(PassError::ledger("nothing was deleted"))?;
    let lease_name = job
        .mode
        .shard()
        .map_or(crate::ledger::RETENTION_LEASE.to_string(), |s| {
            s.lease_name()
        });
    let lease = ledger
        .acquire_lease(&lease_name, &Holder::this_process(run_id), LEASE_TTL)
        .await?;
    info!(epoch = lease.epoch, until = %lease.expires_at, "run lease taken");
    let result = match clock(&ledger, settings.safety.max_clock_skew).await {
        Ok(db_now) => {
            // From here on the run tells the database's time.
            let clock: SharedClock = Arc::new(Anchored::new(db_now));
            let clocked = ledger.with_clock(clock.clone());
            // Renew the lease in the background; if it is lost, fencing stops
            // new deletions at the next intent transaction.
            let renewal = {
                let (ledger, lease) = (ledger.clone(), lease.clone());
                tokio::spawn(async move { renew(&ledger, &lease).await })
            };
            let result = match Pass::new(setup, job, run_id, Some((&clocked, lease.clone())), clock)
            {
                Ok(pass) => pass.go().await,
                Err(e) => Err(e),
            };
            renewal.abort();
            result
        }
        Err(e) => Err(e),
    };
    if let Err(e) = ledger.release_lease(&lease).await {
        warn!(error = %e, "cannot give the run lease back; it expires by itself");
    }
    ledger.close().await;
    result
}

/// Pause between renewal attempts after one failed.
const RENEWAL_RETRY: Duration = Duration::from_secs(5);

/// Renews the lease every third of its time to live until the run ends. A
/// renewal the database did not answer (a connection killed, the server
/// briefly unreachable) is tried again every few seconds: giving up at the
/// first failure would let the lease lapse under a run that is otherwise
/// fine. Only a lease that passed to another run ends the renewals.
async fn renew(ledger: &Ledger, lease: &Lease) {
    let mut wait = LEASE_TTL / 3;
    loop {
        tokio::time::sleep(wait).await;
        match ledger.renew_lease(lease, LEASE_TTL).await {
            Ok(_) => wait = LEASE_TTL / 3,
            Err(crate::ledger::LeaseError::Lost) => {
                error!("the run lease passed to another run; no further deletions are started");
                return;
            }
            Err(e) => {
                warn!(error = %e, "cannot renew the run lease; trying again");
                wait = RENEWAL_RETRY;
            }
        }
    }
}

/// "Now" is the database's clock, the one every worker shares; a machine
/// whose own clock is too far from it is not trusted to delete.
async fn clock(ledger: &Ledger, max_skew: Duration) -> Result<DateTime<Utc>, PassError> {
    let db_now = ledger.now().await.map_err(PassError::ledger(
        "cannot read the database's clock; nothing was deleted",
    ))?;
    let skew = (SystemClock::read() - db_now).abs();
    if skew.to_std().unwrap_or(Duration::MAX) > max_skew {
        return Err(PassError::ClockSkew {
            skew_seconds: skew.num_seconds(),
            max_seconds: max_skew.as_secs(),
        });
    }
    Ok(db_now)
}

/// What a run that records (not a dry run) works with.
struct Recorder<'a> {
    ledger: &'a Ledger,
    journal: RunJournal<'a>,
    destination: Destination,
    /// The pass this run's shard belongs to.
    pass_id: Option<String>,
}

/// A run under way: its inputs and what it found so far.
struct Pass<'a> {
    setup: &'a Setup,
    job: &'a Job<'a>,
    run_id: &'a str,
    /// The run's clock; `now` is its reading at the start, the one every
    /// decision of the run is made at.
    clock: SharedClock,
    now: DateTime<Utc>,
    recorder: Option<Recorder<'a>>,
    stores: Vec<StorePass>,
    recovered: Report,
    problems: Vec<String>,
    erasure: Option<ErasureOutcome>,
    not_approved: u64,
    /// Requests past their deadline and not answered, as notices.
    late_requests: Vec<String>,
    interrupted: bool,
}

impl<'a> Pass<'a> {
    fn new(
        setup: &'a Setup,
        job: &'a Job<'a>,
        run_id: &'a str,
        ledger: Option<(&'a Ledger, Lease)>,
        clock: SharedClock,
    ) -> Result<Self, PassError> {
        let recorder = match ledger {
            Some((ledger, lease)) => Some(Recorder {
                ledger,
                pass_id: lease.holder.pass.clone(),
                journal: ledger.fenced_journal(run_id, lease),
                destination: Destination::open(&setup.settings).map_err(|source| {
                    PassError::Certificates {
                        context: "nothing was deleted",
                        source,
                    }
                })?,
            }),
            None => None,
        };
        Ok(Self {
            setup,
            job,
            run_id,
            now: clock.now(),
            clock,
            recorder,
            stores: Vec::new(),
            recovered: Report::default(),
            problems: Vec::new(),
            erasure: job.mode.erasure().map(|(_, request)| ErasureOutcome {
                request: request.to_string(),
                ..Default::default()
            }),
            not_approved: 0,
            late_requests: Vec::new(),
            interrupted: false,
        })
    }

    /// The named steps of a run, in order.
    async fn go(mut self) -> Result<RunOutcome, PassError> {
        let settings = &self.setup.settings;
        self.stores = stores::open_all(settings);
        stores::establish_deletion(&mut self.stores, settings).await?;
        // The orders first: an index that differs from the chain stops the
        // run before it records or completes anything.
        let orders = self.orders_in_force().await?;
        self.late_requests = crate::request::late_notices(&orders.requests, self.now);
        for notice in &self.late_requests {
            warn!("{notice}");
        }
        if self.recorder.is_some() {
            self.prepare().await?;
        }
        let orders = self.with_erasure(orders).await?;
        self.plan(&orders).await?;
        let breaches = self.limits().await?;
        if self.recorder.is_some() && breaches.is_empty() {
            self.execute().await?;
        }
        self.note_unread_sidecars();
        let status = self.status(&breaches);
        let finished_at = self.clock.now();
        let certificate = self.record_end(status, &breaches, finished_at).await;
        Ok(self.outcome(status, breaches, certificate, finished_at))
    }

    /// Before anything is planned: the run proves it can write its evidence
    /// (the preflight), the destination is this ledger's, a lost
    /// certificate is rebuilt, the run is recorded, and what an interrupted
    /// run left is completed.
    async fn prepare(&mut self) -> Result<(), PassError> {
        let Some(rec) = &self.recorder else {
            return Ok(());
        };
        let (ledger, identity) = (rec.ledger, &self.setup.identity);
        // What killed runs left first: a large manifest's temporary can
        // fill the disk the preflight below needs.
        leftovers::sweep(&rec.destination, self.now).await;
        // Then the preflight, before anything else: recovery below deletes too, and a
        // destination that cannot take a file is better said as such than
        // as a failure to read it.
        if let Err(e) = preflight::check(&rec.destination, identity).await {
            error!(error = chain(&e), "preflight failed; nothing was deleted");
            self.record_refusal().await;
            return Err(PassError::Preflight(e));
        }
        check_destination(ledger, &rec.destination)
            .await
            .map_err(|source| PassError::Certificates {
                context: "cannot read the certificate destination; nothing was deleted",
                source,
            })?
            .map_err(PassError::ForeignDestination)?;
        match restore(ledger, identity, &rec.destination).await {
            Ok(rebuilt) => {
                for location in rebuilt {
                    info!(location = %location, "rebuilt a certificate's missing files from the ledger");
                }
            }
            // Never to be rebuilt by lethe (another key signed it, the
            // ledger's outcomes changed): said, and left to `ledger verify`.
            Err(e @ (CertifyError::OtherKey { .. } | CertifyError::ManifestDiffers(_))) => {
                error!(error = chain(&e), "cannot rebuild a missing certificate");
                self.problems.push(chain(&e));
            }
            Err(source) => {
                error!(
                    error = chain(&source),
                    "cannot rebuild a missing certificate; nothing was deleted"
                );
                self.record_refusal().await;
                return Err(PassError::Certificates {
                    context: "a certificate on record is missing from the destination and cannot be rebuilt now; nothing was deleted (the next run tries again)",
                    source,
                });
            }
        }
        if self.job.mode.erasure().is_some()
            && ledger
                .has_uncertified()
                .await
                .map_err(PassError::ledger("cannot read the ledger"))?
        {
            return Err(PassError::Uncertified);
        }
        // The ledger's part of the preflight: this row is written in a
        // transaction before recovery and before execute, so a ledger that
        // cannot be written stops the run before anything is deleted.
        ledger
            .record(self.run_id, &Event::RunStarted(self.started()))
            .await
            .map_err(PassError::ledger(
                "cannot record the run; nothing was deleted",
            ))?;
        self.recover().await
    }

    /// A run the preflight stopped is still on record, as started and
    /// failed with nothing planned, if the ledger takes the rows; the reason
    /// is in the log and the error (a `run-finished` row has no field for
    /// it, and its body must stay as earlier releases wrote it).
    async fn record_refusal(&self) {
        let Some(rec) = &self.recorder else {
            return;
        };
        let end = RunFinished {
            finished_at: self.clock.now(),
            status: RunStatus::Failed,
            safety_breaches: Vec::new(),
            stores: (self.stores.iter())
                .map(|p| StoreFinished {
                    name: p.outcome.name.clone(),
                    error: None,
                    planned: None,
                    recordings_deleted: 0,
                    objects_deleted: 0,
                    failed: 0,
                })
                .collect(),
        };
        for event in [Event::RunStarted(self.started()), Event::RunFinished(end)] {
            if let Err(e) = rec.ledger.record(self.run_id, &event).await {
                warn!(error = %e, "cannot record the run the preflight stopped");
                return;
            }
        }
    }

    fn started(&self) -> RunStarted {
        let mode = &self.job.mode;
        RunStarted {
            started_at: self.now,
            purpose: match mode {
                Mode::Retention { .. } => Purpose::Retention,
                Mode::Erasure { .. } => Purpose::Erasure,
            },
            approved_plan_sha256: mode.approved().map(|a| a.sha256.clone()),
            shard: mode.shard().map(|s| s.to_string()),
            tool: Tool::lethe(),
            policies: (self.setup.policy.files.iter())
                .map(|f| PolicyRef {
                    file: f.name.clone(),
                    sha256: f.sha256.clone(),
                })
                .collect(),
            stores: (self.stores.iter())
                .map(|p| StoreRef {
                    name: p.outcome.name.clone(),
                    url: p.outcome.url.clone(),
                })
                .collect(),
        }
    }

    /// Completes the deletions an interrupted run left. Intents of a run
    /// that still holds a lease (a concurrent shard) are in flight, not
    /// interrupted: only the others are completed here.
    async fn recover(&mut self) -> Result<(), PassError> {
        let Some(rec) = &self.recorder else {
            return Ok(());
        };
        let live = rec
            .ledger
            .live_runs()
            .await
            .map_err(PassError::ledger("cannot read the run leases"))?;
        let pending: Vec<_> = rec
            .ledger
            .pending()
            .await
            .map_err(PassError::ledger("cannot read interrupted deletions"))?
            .into_iter()
            .filter(|p| p.run_id == self.run_id || !live.contains(&p.run_id))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        warn!(
            count = pending.len(),
            "completing deletions an interrupted run left unfinished"
        );
        let stores: HashMap<String, crate::store::Store> = self
            .stores
            .iter()
            .filter_map(|p| p.store.clone().map(|s| (p.outcome.name.clone(), s)))
            .collect();
        self.recovered =
            execute::recover(&stores, pending, &rec.journal, self.clock.as_ref()).await;
        if let Some(a) = &self.recovered.aborted {
            self.problems.push(a.clone());
        }
        Ok(())
    }

    /// The holds and erasures in force, read after checking their index
    /// against the hash chain.
    async fn orders_in_force(&self) -> Result<Orders, PassError> {
        match &self.recorder {
            Some(rec) => orders_from(rec.ledger).await,
            None => read_orders(&self.setup.settings).await,
        }
    }

    /// The orders with this run's erasure request added; the request is
    /// recorded before anything is deleted, so that even if this run stops
    /// half-way, later runs erase the rest of the subject's recordings.
    async fn with_erasure(&self, mut orders: Orders) -> Result<Orders, PassError> {
        if let Some((subject, request)) = self.job.mode.erasure() {
            let digest = crate::hold::subject_digest(subject);
            if let Some(rec) = &self.recorder {
                self.register_erasure(rec.ledger, request, &digest).await?;
                rec.ledger
                    .record_erasure(self.run_id, request, &digest, self.now)
                    .await
                    .map_err(|e| match e {
                        crate::ledger::LedgerError::RequestReused(_) => PassError::RequestReused(e),
                        other => PassError::Ledger {
                            context: "nothing was deleted",
                            source: other,
                        },
                    })?;
            }
            orders.erasures.insert(digest.clone(), request.to_string());
            orders.only_subject = Some(digest);
        }
        Ok(orders)
    }

    /// Registers the erasure request (or finds it registered, received
    /// earlier): the register counts its deadline from its receipt.
    async fn register_erasure(
        &self,
        ledger: &crate::ledger::Ledger,
        request: &str,
        digest: &str,
    ) -> Result<(), PassError> {
        let received = self.job.mode.received().unwrap_or(self.now);
        let opened = crate::ledger::RequestOpened {
            request: request.to_string(),
            kind: crate::request::RequestKind::Erasure,
            subject_sha256: digest.to_string(),
            received,
            by: None,
        };
        ledger
            .open_request(self.run_id, &opened)
            .await
            .map_err(|source| PassError::Ledger {
                context: "cannot register the erasure request; nothing was deleted",
                source,
            })?
            .map(|_| ())
            .map_err(|refusal| PassError::RequestRefused(refusal.to_string()))
    }

    /// Plans every store into its spool: the safety limits need the whole
    /// plan. Holds are read now for the plan, and again in every intent
    /// transaction.
    async fn plan(&mut self, orders: &Orders) -> Result<(), PassError> {
        let planning = Planning {
            policy: &self.setup.policy,
            orders,
            now: self.now,
            scope: Scope {
                shard: self.job.mode.shard(),
                // With an approved plan, a deletion due now but not approved waits.
                approved: self.job.mode.approved(),
            },
            progress: self.job.ctx.progress,
        };
        for p in self.stores.iter_mut() {
            if self.job.ctx.stopping() {
                // Stopped while planning: nothing of this store was deleted.
                self.interrupted = true;
                break;
            }
            self.not_approved += p.plan(&planning, self.erasure.as_mut()).await?;
        }
        Ok(())
    }

    /// The safety limits, checked on the whole plan; for a shard, on the
    /// plans of every shard of its pass.
    async fn limits(&self) -> Result<Vec<String>, PassError> {
        let settings = &self.setup.settings;
        // An erasure concerns one subject: max_fraction of a store is no
        // measure of it, max_deletions still is.
        let limits = match self.job.mode {
            Mode::Retention { .. } => settings.safety,
            Mode::Erasure { .. } => crate::config::Safety {
                max_fraction: 1.0,
                ..settings.safety
            },
        };
        let shard = self.job.mode.shard();
        let pass = self
            .recorder
            .as_ref()
            .and_then(|r| r.pass_id.as_deref().map(|p| (r.ledger, p)));
        let (Some(shard), Some((ledger, pass)), false) = (shard, pass, self.interrupted) else {
            return Ok(check_safety(
                self.stores.iter().filter_map(|p| {
                    p.outcome
                        .stats
                        .as_ref()
                        .map(|s| (p.outcome.name.as_str(), s))
                }),
                limits,
            ));
        };
        let stopping = || self.job.ctx.stopping();
        let whole = whole_pass(
            ledger,
            self.run_id,
            pass,
            shard,
            &self.stores,
            settings.safety.shard_wait,
            &stopping,
        )
        .await?;
        Ok(match whole {
            Ok(totals) => check_safety(totals.iter().map(|(n, s)| (n.as_str(), s)), limits)
                .into_iter()
                .map(|b| format!("the pass of {} shards: {b}", shard.count))
                .collect(),
            Err(waited) => vec![waited],
        })
    }

    /// Executes every store's spool, store after store; a journal failure
    /// stops the run.
    async fn execute(&mut self) -> Result<(), PassError> {
        let Some(rec) = &self.recorder else {
            return Ok(());
        };
        let progress = self.job.ctx.progress;
        for p in self.stores.iter_mut() {
            let options = execute::Options {
                stop: Some(self.job.ctx.stop.clone()),
                progress: progress.deletions(),
                clock: self.clock.clone(),
                ..Default::default()
            };
            progress.store(&p.outcome.name);
            if let Some(e) = p.execute(&rec.journal, options).await? {
                // What the spool could not give back was not deleted: said, never skipped.
                self.problems.push(format!(
                    "store {}: {e}; the rest of its plan was not executed",
                    p.outcome.name
                ));
            }
            if let Some(a) = &p.outcome.report.aborted {
                self.problems.push(a.clone());
                break;
            }
        }
        Ok(())
    }

    /// A sidecar the store failed to give kept its recording: safe, but the
    /// run did not do its work, and says so (the next run tries again).
    fn note_unread_sidecars(&mut self) {
        for p in &self.stores {
            let failed_reads = p.outcome.stats.as_ref().and_then(|s| {
                s.report_by_code
                    .get(crate::classify::SIDECAR_READ_FAILED)
                    .copied()
            });
            if let Some(n) = failed_reads {
                self.problems.push(format!(
                    "store {}: {n} sidecars could not be read from the store; their recordings were kept and the next run tries again",
                    p.outcome.name
                ));
            }
        }
    }

    fn status(&self, breaches: &[String]) -> RunStatus {
        let stores = self.stores.iter().map(|p| &p.outcome);
        let failures = stores
            .clone()
            .any(|p| p.error.is_some() || p.report.failed > 0)
            || self.recovered.failed > 0
            || !self.problems.is_empty();
        let interrupted = self.interrupted || stores.clone().any(|p| p.report.interrupted);
        if !breaches.is_empty() {
            RunStatus::StoppedBySafetyLimit
        } else if interrupted {
            RunStatus::Interrupted
        } else if stores.clone().any(|p| p.report.aborted.is_some())
            || self.recovered.aborted.is_some()
        {
            RunStatus::Failed
        } else if failures {
            RunStatus::CompletedWithFailures
        } else {
            RunStatus::Completed
        }
    }

    /// Records the run's end and issues its certificate; returns where the
    /// certificate went. A failure of either is one of the run's problems:
    /// the next run certifies what this one deleted.
    async fn record_end(
        &mut self,
        status: RunStatus,
        breaches: &[String],
        finished_at: DateTime<Utc>,
    ) -> Option<String> {
        let rec = self.recorder.as_ref()?;
        let end = RunFinished {
            finished_at,
            status,
            safety_breaches: breaches.to_vec(),
            stores: (self.stores.iter())
                .map(|p| StoreFinished {
                    name: p.outcome.name.clone(),
                    error: p.outcome.error.clone(),
                    planned: p.outcome.stats.clone(),
                    recordings_deleted: p.outcome.report.recordings_deleted,
                    objects_deleted: p.outcome.report.objects_deleted,
                    failed: p.outcome.report.failed,
                })
                .collect(),
        };
        if let Err(e) = rec
            .ledger
            .record(self.run_id, &Event::RunFinished(end))
            .await
        {
            self.problems
                .push(format!("cannot record the end of the run: {e}"));
            return None;
        }
        let infos: Vec<StoreInfo> = self
            .stores
            .iter()
            .map(|p| StoreInfo {
                name: p.outcome.name.clone(),
                url: p.outcome.url.clone(),
                deletion: p.outcome.deletion.clone(),
                verification: p.outcome.verification,
            })
            .collect();
        let issue = Issue {
            ledger: rec.ledger,
            identity: &self.setup.identity,
            destination: &rec.destination,
            run_id: self.run_id,
            policies: &self.setup.policy.files,
            stores: &infos,
            extras: Extras {
                erasure: self.receipt(),
                approved_plan_sha256: self.job.mode.approved().map(|a| a.sha256.clone()),
            },
            issued_at: self.clock.now(),
        };
        match issue.certify().await {
            Ok(location) => Some(location),
            Err(e) => {
                error!(
                    error = chain(&e),
                    "cannot issue the certificate; the next run certifies these deletions"
                );
                self.problems.push(format!("certificate: {}", chain(&e)));
                None
            }
        }
    }

    /// What an erasure's receipt states beyond the deletions.
    fn receipt(&self) -> Option<crate::certificate::Erasure> {
        let ((subject, request), e) = self.job.mode.erasure().zip(self.erasure.as_ref())?;
        Some(crate::certificate::Erasure {
            request: request.to_string(),
            subject_sha256: crate::hold::subject_digest(subject),
            protected: e.protected.clone(),
            later_recordings: crate::certificate::LATER_RECORDINGS.into(),
            notice: e
                .found_nothing()
                .then(|| crate::certificate::NOTHING_FOUND.to_string()),
        })
    }

    fn outcome(
        self,
        status: RunStatus,
        breaches: Vec<String>,
        certificate: Option<String>,
        finished_at: DateTime<Utc>,
    ) -> RunOutcome {
        if let Some(e) = &self.erasure
            && e.found_nothing()
        {
            warn!(request = %e.request, "the erasure found nothing of the subject in any store");
        }
        RunOutcome {
            run_id: self.run_id.to_string(),
            dry_run: self.recorder.is_none(),
            status,
            stores: self.stores.into_iter().map(|p| p.outcome).collect(),
            recovered: self.recovered,
            breaches,
            problems: self.problems,
            certificate,
            approved: self.job.mode.approved().map(|a| ApprovedSummary {
                sha256: a.sha256.clone(),
                items: a.items,
                not_approved: self.not_approved,
            }),
            erasure: self.erasure,
            late_requests: self.late_requests.len() as u64,
            finished_at,
        }
    }
}
