//! `lethe daemon`: the retention pass on the config's `[schedule] cron`, for
//! hosts without Kubernetes (systemd, a VM). One pass at a time: a tick that
//! comes while a pass is still running is skipped and counted, never queued.
//! Serves `/metrics` and `/healthz` on `[daemon] listen`. SIGTERM (or
//! Ctrl-C) lets the batch in progress finish, records the pass as
//! interrupted, certifies what it did, and exits 0.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};
use tracing::{error, info, warn};

use super::run;
use super::{Exit, OrExit, Outcome, load_policy, resolve_settings, stop_on_signal};
use crate::certificate::Identity;
use crate::config::Args;
use crate::ledger::Ledger;
use crate::telemetry::Telemetry;

pub(crate) async fn daemon(args: &Args, out: &mut dyn Write) -> Outcome {
    // What every pass needs is checked before the daemon starts: a broken
    // config, policy, signing key or ledger stops it at once (exit 2, which
    // systemd does not restart) instead of failing every pass. Each pass
    // reads them again, so edits apply from the next pass on.
    let settings = resolve_settings(args)?;
    // Each pass reads the file the daemon started with, wherever the
    // environment points later.
    let config = Args {
        config: Some(settings.config_path.clone()),
    };
    load_policy(&settings)?;
    Identity::load(&settings.signing.key_path, &settings.signing.key_id)
        .context("every pass signs its certificate with this key; the daemon does not start")
        .or_exit(Exit::Usage)?;
    let ledger = Ledger::open(&settings.database)
        .await
        .context("every pass records itself in the ledger; the daemon does not start")
        .or_exit(Exit::Usage)?;
    let last_success = ledger.last_success(None).await;
    ledger.close().await;
    let Some(cron) = settings.schedule.clone() else {
        return Err(anyhow::anyhow!(
            "{}: the daemon needs a schedule, e.g.\n[schedule]\ncron = \"0 0 3 * * *\"   # sec min hour day month weekday, UTC",
            settings.config_path.display()
        ))
        .or_exit(Exit::Usage);
    };
    let telemetry = Telemetry::new().or_exit(Exit::Runtime)?;
    // A restarted daemon reports the last success the ledger remembers.
    match last_success {
        Ok(Some(at)) => telemetry.set_last_success(at),
        Ok(None) => {}
        Err(e) => warn!(error = %e, "cannot read the last success from the ledger"),
    }
    let stop = stop_on_signal();

    let listener = tokio::net::TcpListener::bind(settings.daemon_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for /metrics (set [daemon] listen)",
                settings.daemon_listen
            )
        })
        .or_exit(Exit::Runtime)?;
    let address = listener.local_addr().or_exit(Exit::Runtime)?;
    let server = tokio::spawn(crate::telemetry::serve(listener, telemetry.clone()));

    // Ticks go through a channel of one; `running` turns away the ticks that
    // come while a pass is in progress.
    let running = Arc::new(AtomicBool::new(false));
    let (ticks, mut tick) = mpsc::channel::<()>(1);
    let scheduler = JobScheduler::new()
        .await
        .context("cannot start the scheduler")
        .or_exit(Exit::Runtime)?;
    let job = {
        let running = running.clone();
        let telemetry = telemetry.clone();
        CronJob::new_async(cron.as_str(), move |_, _| {
            let busy = running.load(Ordering::SeqCst);
            let sent = !busy && ticks.try_send(()).is_ok();
            let telemetry = telemetry.clone();
            Box::pin(async move {
                if !sent {
                    telemetry.run_skipped();
                    warn!("scheduled pass skipped: the previous one is still running");
                }
            })
        })
        .with_context(|| format!("invalid cron {cron:?}"))
        .or_exit(Exit::Usage)?
    };
    let job_id = scheduler
        .add(job)
        .await
        .context("cannot schedule the pass")
        .or_exit(Exit::Runtime)?;
    scheduler
        .start()
        .await
        .context("cannot start the scheduler")
        .or_exit(Exit::Runtime)?;
    let mut scheduler = scheduler;
    // The next tick as logs print times: RFC 3339, UTC ("never" if none).
    let next = |s: JobScheduler| async move {
        let mut s = s;
        crate::decide::fmt_time(s.next_tick_for_job(job_id).await.ok().flatten())
    };
    info!(
        schedule = %cron,
        metrics = %format!("http://{address}/metrics"),
        next = %next(scheduler.clone()).await,
        "daemon started"
    );

    loop {
        let woke = tokio::select! {
            t = tick.recv() => t.is_some(),
            _ = stopped(&stop) => false,
        };
        if !woke || stop.load(Ordering::SeqCst) {
            break;
        }
        running.store(true, Ordering::SeqCst);
        let start = run::Start {
            dry_run: false,
            telemetry: Some(&telemetry),
            stop: stop.clone(),
            progress: false,
        };
        let mode = crate::pass::Mode::Retention {
            approved: None,
            shard: None,
        };
        let result = run::run(&config, mode, start, out).await;
        running.store(false, Ordering::SeqCst);
        give_back_freed_memory();
        match result {
            Ok(code) => {
                info!(exit_code = code as u8, next = %next(scheduler.clone()).await, "pass finished")
            }
            Err(f) => {
                error!(exit_code = f.exit as u8, error = super::chain(&f.error), next = %next(scheduler.clone()).await, "pass failed; the daemon goes on")
            }
        }
        let _ = out.flush();
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    info!("stop requested: daemon exits");
    let _ = scheduler.shutdown().await;
    server.abort();
    Ok(Exit::Success)
}

/// Returns the memory the pass freed to the system before the daemon waits
/// for its next tick. glibc keeps what a thread frees in that thread's arena
/// (up to eight per core), and a pass runs on many threads (the runtime's
/// workers and blocking threads, a thread per SQLite connection), so each
/// arena comes to hold pages of a pass's peak: over 300 passes the heap in
/// use between passes stayed at 0.4 MiB (heaptrack) while resident memory
/// grew by 12 MiB. `malloc_trim` hands back the free pages of every arena,
/// not only the top of the main heap: over 1,000 passes (debug build) the
/// growth fell from 14.4 to 7.0 MiB on a steady store, and from 18.2 to
/// 11.4 MiB on one that grew sevenfold (`tests/it/longlife.rs`).
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no precondition; it takes each arena's lock
    // and releases only pages with no allocation on them.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resolves once the stop flag is set (checked four times a second).
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
