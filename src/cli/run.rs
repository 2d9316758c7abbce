//! `lethe run`, `lethe erase` and each pass of the daemon: read the
//! configuration (any problem: exit 2, nothing touched), drive
//! [`crate::pass::run`], render its outcome, map it to an exit code and
//! record the run's figures.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tracing::warn;

use super::progress::Progress;
use super::{
    Exit, Failure, OrExit, Outcome, output_error, pass_failure, resolve_settings, stop_on_signal,
};
use crate::config::Args;
use crate::config::Settings;
use crate::pass::{self, Job, Mode, RunContext, Setup, Verdict};
use crate::telemetry::Telemetry;

/// How a run is started, beyond its mode.
pub(crate) struct Start<'a> {
    pub dry_run: bool,
    /// Where the run's figures go (a batch run's push or textfile; the daemon's `/metrics`).
    pub telemetry: Option<&'a Telemetry>,
    /// Set by SIGTERM: finish the batch in progress, record the run as interrupted, certify.
    pub stop: Arc<AtomicBool>,
    /// Show a progress line (when stderr is a terminal and logs are text).
    pub progress: bool,
}

/// The exit code a run's verdict gives.
pub(crate) fn exit_of(verdict: Verdict) -> Exit {
    match verdict {
        Verdict::Done => Exit::Success,
        Verdict::Incomplete => Exit::Runtime,
        Verdict::Stopped => Exit::Safety,
    }
}

/// One run of `mode`: `lethe run` and `lethe erase` share everything but
/// what is planned and certified.
pub(crate) async fn run(args: &Args, mode: Mode, start: Start<'_>, out: &mut dyn Write) -> Outcome {
    let clock = std::time::Instant::now();
    if let Some(t) = start.telemetry {
        t.run_started();
        if let Mode::Retention { shard, .. } = &mode {
            seed_last_success(args, shard.map(|s| s.to_string()).as_deref(), t).await;
        }
    }
    let result = configured(args, mode, &start, out).await;
    if let Some(t) = start.telemetry {
        match &result {
            Ok((exit, outcome)) => {
                t.set_requests_overdue(outcome.late_requests);
                t.record_run(
                    &outcome.figures(),
                    outcome.metrics_status(),
                    *exit as i64,
                    clock.elapsed(),
                    outcome.finished_at,
                )
            }
            // A pass that failed records the failure.
            Err(f) => t.record_run(
                &[],
                crate::telemetry::RunLabel::Failed,
                f.exit as i64,
                clock.elapsed(),
                crate::clock::SystemClock::read(),
            ),
        }
    }
    result.map(|(exit, _)| exit)
}

/// Sets the last success from the ledger before the run, so that a run
/// that fails (even before it reaches the ledger) reports the previous
/// success, not 0. Without a readable ledger the gauge is left as it is.
async fn seed_last_success(args: &Args, shard: Option<&str>, telemetry: &Telemetry) {
    let Ok(settings) = Settings::resolve(args, &crate::config::EnvOverrides::from_process()) else {
        return;
    };
    match pass::last_success(&settings, shard).await {
        Ok(Some(at)) => telemetry.set_last_success(at),
        Ok(None) => {}
        Err(e) => warn!(
            error = pass::chain(&e),
            "cannot read the last success from the ledger"
        ),
    }
}

/// Loads the configuration, policy and key, runs, and renders the outcome.
async fn configured(
    args: &Args,
    mode: Mode,
    start: &Start<'_>,
    out: &mut dyn Write,
) -> Result<(Exit, pass::RunOutcome), Failure> {
    let settings = resolve_settings(args)?;
    let setup = Setup::load(settings).map_err(pass_failure)?;
    warn_about_skew(&setup.settings, out)?;
    let mut progress = match start.progress {
        true => Progress::new(),
        false => Progress::hidden(),
    };
    let job = Job {
        mode,
        dry_run: start.dry_run,
        ctx: RunContext {
            stop: start.stop.clone(),
            progress: &progress,
        },
    };
    let outcome = pass::run(&setup, &job).await.map_err(pass_failure)?;
    progress.finish();
    crate::report::run::summary(out, &outcome).map_err(output_error)?;
    Ok((exit_of(outcome.verdict()), outcome))
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

/// What `lethe run` is given on the command line.
#[derive(clap::Args, Debug)]
pub(crate) struct RunOptions {
    /// Check what a run would (signing key, ledger, safety limits) and plan, but delete and record nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Delete only items of this approved plan (from `plan --out`) that are still expired and unheld
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Take only share I of N of the recordings (0 <= I < N), e.g. $(JOB_COMPLETION_INDEX)/4 in an Indexed Job
    #[arg(long, value_name = "I/N", env = "LETHE_SHARD")]
    pub shard: Option<String>,
    /// Push the run's metrics to this Prometheus Pushgateway when it ends
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
    /// Write the run's metrics to this file (node_exporter textfile collector)
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Not accepted: a run always uses the current time (see `plan --as-of`)
    #[arg(long, hide = true, value_name = "TIME")]
    pub as_of: Option<String>,
}

/// `lethe run`: the retention pass, with its figures pushed or written.
pub(crate) async fn retention(args: &Args, options: RunOptions, out: &mut dyn Write) -> Outcome {
    let RunOptions {
        dry_run,
        as_of,
        plan,
        shard,
        pushgateway,
        metrics_file,
    } = options;
    if as_of.is_some() {
        return Err(Failure {
            exit: Exit::Usage,
            error: anyhow::anyhow!(
                "`run` always uses the current time and refuses --as-of; use `lethe plan --as-of TIME` to look ahead or back"
            ),
        });
    }
    let approved = match plan {
        Some(path) => Some(crate::plan::ApprovedPlan::load(&path).or_exit(Exit::Usage)?),
        None => None,
    };
    let shard = match shard {
        Some(s) => Some(crate::decide::Shard::parse(&s).map_err(|e| Failure {
            exit: Exit::Usage,
            error: anyhow::anyhow!(e),
        })?),
        None => None,
    };
    if let Some(url) = &pushgateway {
        let scheme = url.parse::<http::Uri>().ok().and_then(|u| {
            u.host()?;
            u.scheme_str().map(str::to_string)
        });
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            return Err(Failure {
                exit: Exit::Usage,
                error: anyhow::anyhow!(
                    "--pushgateway {url:?} is not an http(s) URL like http://pushgateway:9091"
                ),
            });
        }
    }
    let telemetry = match (&pushgateway, &metrics_file) {
        (None, None) => None,
        _ => Some(crate::telemetry::Telemetry::new().or_exit(Exit::Runtime)?),
    };
    let shard_label = shard.map(|s| s.to_string());
    let start = Start {
        dry_run,
        telemetry: telemetry.as_ref(),
        stop: stop_on_signal(),
        progress: true,
    };
    let mode = crate::pass::Mode::Retention { approved, shard };
    let result = run(args, mode, start, out).await;
    if let Some(t) = telemetry {
        if let Some(path) = &metrics_file
            && let Err(e) = t.write_file(path)
        {
            tracing::error!(error = %e, "cannot write the metrics file");
        }
        if let Some(url) = &pushgateway
            && let Err(e) = t.push(url, shard_label.as_deref()).await
        {
            tracing::error!(error = %e, "cannot push the metrics");
        }
    }
    result
}

/// `lethe erase`: a data subject's erasure request, carried out now.
pub(crate) async fn erase(
    args: &Args,
    subject: &str,
    request: &str,
    received: Option<&str>,
    dry_run: bool,
    out: &mut dyn Write,
) -> Outcome {
    let (subject, request) = (subject.trim().to_string(), request.trim().to_string());
    let received = super::requests::parse_received(received, crate::clock::SystemClock::read())?;
    if subject.is_empty() || request.is_empty() {
        return Err(Failure {
            exit: Exit::Usage,
            error: anyhow::anyhow!("--subject and --request must not be empty"),
        });
    }
    let start = Start {
        dry_run,
        telemetry: None,
        stop: stop_on_signal(),
        progress: true,
    };
    let mode = crate::pass::Mode::Erasure {
        subject,
        request,
        received,
    };
    run(args, mode, start, out).await
}
