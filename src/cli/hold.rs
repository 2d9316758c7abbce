//! `lethe hold place | release | list | show`: legal holds, recorded in the ledger.

use std::io::Write;

use anyhow::Context;
use chrono::NaiveDate;
use tracing::{info, warn};

use super::HoldCommand;
use super::{
    Exit, Failure, Format, OrExit, Outcome, load_policy, output_error, required, resolve_settings,
    usage,
};
use crate::config::{Args, Settings};
use crate::decide::Action;
use crate::hold::{Hold, Selector};
use crate::ledger::{HoldRecord, Ledger, LedgerError, Release, ReleaseState};

/// What `hold place` is given.
pub(crate) struct Placement {
    pub case: String,
    pub reason: String,
    pub by: String,
    pub subjects: Vec<String>,
    pub call_ids: Vec<String>,
    pub keys: Vec<String>,
    pub prefixes: Vec<String>,
    pub recorded_between: Vec<String>,
    pub store: Option<String>,
    pub review: Option<String>,
    /// Skip counting what the hold covers now.
    pub no_scan: bool,
}

fn ledger_failure(e: LedgerError) -> Failure {
    match e {
        LedgerError::CaseExists(_)
        | LedgerError::NoSuchHold(_)
        | LedgerError::AlreadyReleased(_)
        | LedgerError::ReleasePending { .. }
        | LedgerError::NoReleaseRequested(_)
        | LedgerError::SamePerson { .. } => Failure {
            exit: Exit::Usage,
            error: e.into(),
        },
        other => Failure {
            exit: Exit::Runtime,
            error: anyhow::Error::new(other).context("the ledger could not record it"),
        },
    }
}

pub(crate) async fn place(args: &Args, p: Placement, out: &mut dyn Write) -> Outcome {
    let settings = resolve_settings(args)?;
    let case = required("case", &p.case)?;
    let reason = required("reason", &p.reason)?;
    let by = required("by", &p.by)?;
    let mut selectors = Vec::new();
    selectors.extend(
        p.subjects
            .iter()
            .map(|s| required("subject", s).map(|subject| Selector::Subject { subject })),
    );
    selectors.extend(
        p.call_ids
            .iter()
            .map(|s| required("call-id", s).map(|call_id| Selector::CallId { call_id })),
    );
    selectors.extend(
        p.keys
            .iter()
            .map(|s| required("key", s).and_then(|k| Selector::key(&k).map_err(usage))),
    );
    selectors.extend(
        p.prefixes
            .iter()
            .map(|s| required("prefix", s).and_then(|k| Selector::prefix(&k).map_err(usage))),
    );
    selectors.extend(
        p.recorded_between
            .iter()
            .map(|s| Selector::recorded_between(s).map_err(usage)),
    );
    let selectors = selectors.into_iter().collect::<Result<Vec<_>, _>>()?;
    if selectors.is_empty() {
        return Err(usage(
            "a hold needs at least one selector: --subject, --call-id, --key, --prefix or --recorded-between",
        ));
    }
    if let Some(store) = &p.store
        && settings.store(store).is_none()
    {
        return Err(usage(format!(
            "store {store:?} is not configured in {}",
            settings.config_path.display()
        )));
    }
    let review = match &p.review {
        Some(d) => Some(
            NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map_err(|_| usage(format!("--review {d:?} is not a date (YYYY-MM-DD)")))?,
        ),
        None => None,
    };
    let placed_at = crate::clock::SystemClock::read();
    let review_passed = review.filter(|r| *r < placed_at.date_naive());
    let hold = Hold {
        case: case.clone(),
        reason,
        placed_by: by.clone(),
        placed_at,
        selectors,
        store: p.store.clone(),
        review,
    };
    let ledger = Ledger::open(&settings.database)
        .await
        .context("cannot open the ledger; the hold was not placed")
        .or_exit(Exit::Runtime)?;
    let seq = ledger.place_hold(&hold).await.map_err(ledger_failure)?;
    ledger.close().await;
    info!(case = %case, by = %by, ledger_seq = seq, "hold placed");
    writeln!(
        out,
        "hold {case} placed by {by} (ledger row {seq}); it covers recordings with {}",
        describe(&hold)
    )
    .map_err(output_error)?;
    if let Some(review) = review_passed {
        // Accepted (a hold is never refused for it), but plans will report
        // it overdue from the first one on: most likely a typo in the year.
        warn!(case = %case, review = %review, "the review date is already past");
        writeln!(
            out,
            "WARNING: the review date {review} is already past; every plan will report the hold as due for review"
        )
        .map_err(output_error)?;
    }
    if !p.no_scan {
        report_coverage(&settings, &hold, out).await?;
    }
    Ok(Exit::Success)
}

/// Counts what a freshly placed hold covers now, from a scan of the stores,
/// and warns when that is nothing: a selector that names no key (a typo, a
/// key written as another tool shows it) would otherwise hold nothing while
/// everyone believes the recordings are safe. The hold stays placed either
/// way: a subject's recordings may only arrive later.
async fn report_coverage(
    settings: &Settings,
    hold: &Hold,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let case = hold.case.as_str();
    let policy = match load_policy(settings) {
        Ok(p) => p,
        Err(f) => {
            warn!(
                case,
                error = format!("{:#}", f.error),
                "cannot count what the hold covers"
            );
            writeln!(
                out,
                "WARNING: cannot count what hold {case} covers now: {:#}",
                f.error
            )
            .map_err(output_error)?;
            return Ok(());
        }
    };
    let crate::pass::Coverage {
        recordings,
        objects,
        unscanned,
    } = crate::pass::hold_coverage(settings, &policy, hold).await;
    for failure in &unscanned {
        warn!(case, store = %failure, "cannot count what the hold covers in this store");
        writeln!(out, "WARNING: store {failure}: not scanned").map_err(output_error)?;
    }
    info!(case, recordings, objects, "hold coverage counted");
    writeln!(
        out,
        "it covers {recordings} recording(s) now ({objects} object(s) with their sidecars; companions are held with them)"
    )
    .map_err(output_error)?;
    if recordings == 0 {
        warn!(
            case,
            "the hold covers no recording now: check its selectors"
        );
        writeln!(
            out,
            "WARNING: hold {case} covers NO recording now. Check the selectors against `lethe plan` \
             (keys are relative to the store, e.g. calls/disputes/2025/); if they are wrong, place \
             a corrected hold under a new case id and release this one"
        )
        .map_err(output_error)?;
    }
    Ok(())
}

pub(crate) async fn release(
    args: &Args,
    case: &str,
    by: &str,
    reason: &str,
    out: &mut dyn Write,
) -> Outcome {
    let settings = resolve_settings(args)?;
    let release = Release {
        case: required("case", case)?,
        by: required("by", by)?,
        reason: required("reason", reason)?,
        at: crate::clock::SystemClock::read(),
        approved_by: vec![],
    };
    let ledger = Ledger::open(&settings.database)
        .await
        .context("cannot open the ledger; the hold was not released")
        .or_exit(Exit::Runtime)?;
    let state = ledger
        .request_release(&release, settings.release_approvals)
        .await
        .map_err(ledger_failure)?;
    ledger.close().await;
    report_release(out, &release.case, &release.by, state)?;
    Ok(Exit::Success)
}

pub(crate) async fn approve_release(
    args: &Args,
    case: &str,
    by: &str,
    out: &mut dyn Write,
) -> Outcome {
    let settings = resolve_settings(args)?;
    let (case, by) = (required("case", case)?, required("by", by)?);
    let ledger = Ledger::open(&settings.database)
        .await
        .context("cannot open the ledger")
        .or_exit(Exit::Runtime)?;
    let state = ledger
        .approve_release(
            &case,
            &by,
            crate::clock::SystemClock::read(),
            settings.release_approvals,
        )
        .await
        .map_err(ledger_failure)?;
    ledger.close().await;
    report_release(out, &case, &by, state)?;
    Ok(Exit::Success)
}

fn report_release(
    out: &mut dyn Write,
    case: &str,
    by: &str,
    state: ReleaseState,
) -> Result<(), Failure> {
    match state {
        ReleaseState::Released(seq) => {
            info!(case, by, ledger_seq = seq, "hold released");
            writeln!(out, "hold {case} released (ledger row {seq}); its recordings return to their normal retention").map_err(output_error)
        }
        ReleaseState::Awaiting { requested_by, more } => {
            info!(case, by, more, "hold release awaits approval");
            writeln!(
                out,
                "release of hold {case} requested by {requested_by}; it takes effect once {more} more person(s) approve: lethe hold approve-release --case {case} --by WHO"
            )
            .map_err(output_error)
        }
    }
}

fn describe(hold: &Hold) -> String {
    let selectors: Vec<String> = hold.selectors.iter().map(Selector::describe).collect();
    let scope = hold
        .store
        .as_ref()
        .map(|s| format!(" in store {s}"))
        .unwrap_or_default();
    format!("{}{scope}", selectors.join(" or "))
}

async fn records(args: &Args) -> Result<Vec<HoldRecord>, Failure> {
    let Some(ledger) = super::existing_ledger(args).await? else {
        return Ok(Vec::new());
    };
    let holds = ledger.holds().await.or_exit(Exit::Runtime)?;
    ledger.close().await;
    Ok(holds)
}

pub(crate) async fn list(args: &Args, all: bool, format: Format, out: &mut dyn Write) -> Outcome {
    let today = crate::clock::SystemClock::read().date_naive();
    let holds: Vec<HoldRecord> = records(args)
        .await?
        .into_iter()
        .filter(|h| all || h.released.is_none())
        .collect();
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut *out, &holds).map_err(|e| output_error(e.into()))?;
        writeln!(out).map_err(output_error)?;
        return Ok(Exit::Success);
    }
    if holds.is_empty() {
        writeln!(out, "{}", if all { "no holds" } else { "no active holds" })
            .map_err(output_error)?;
    }
    for h in &holds {
        let status = match &h.released {
            Some(r) => format!(
                "released {} (requested by {}{}): {}",
                r.at.format("%Y-%m-%d"),
                r.by,
                if r.approved_by.is_empty() {
                    String::new()
                } else {
                    format!(", approved by {}", r.approved_by.join(", "))
                },
                r.reason
            ),
            None => match &h.release_requested {
                Some(r) => format!(
                    "ACTIVE (release requested by {} on {}{}; awaiting approval)",
                    r.by,
                    r.at.format("%Y-%m-%d"),
                    if r.approved_by.is_empty() {
                        String::new()
                    } else {
                        format!(", approved by {}", r.approved_by.join(", "))
                    }
                ),
                None => "ACTIVE".to_string(),
            },
        };
        writeln!(out, "{}  {status}", h.hold.case).map_err(output_error)?;
        writeln!(
            out,
            "  placed {} by {}: {}",
            h.hold.placed_at.format("%Y-%m-%d %H:%M UTC"),
            h.hold.placed_by,
            h.hold.reason
        )
        .map_err(output_error)?;
        writeln!(out, "  covers {}", describe(&h.hold)).map_err(output_error)?;
        if let Some(review) = h.hold.review {
            let overdue = if h.released.is_none() && review < today {
                " (OVERDUE: review it)"
            } else {
                ""
            };
            writeln!(out, "  review by {review}{overdue}").map_err(output_error)?;
        }
    }
    Ok(Exit::Success)
}

pub(crate) async fn show(args: &Args, case: &str, out: &mut dyn Write) -> Outcome {
    let record = records(args)
        .await?
        .into_iter()
        .find(|h| h.hold.case == case)
        .ok_or_else(|| usage(format!("there is no hold for case {case}")))?;
    let settings = resolve_settings(args)?;
    let policy = load_policy(&settings)?;
    writeln!(
        out,
        "hold {} ({})",
        record.hold.case,
        if record.released.is_some() {
            "released"
        } else {
            "ACTIVE"
        }
    )
    .map_err(output_error)?;
    writeln!(
        out,
        "  placed {} by {}: {}",
        record.hold.placed_at.format("%Y-%m-%d %H:%M UTC"),
        record.hold.placed_by,
        record.hold.reason
    )
    .map_err(output_error)?;
    writeln!(out, "  covers {}", describe(&record.hold)).map_err(output_error)?;
    writeln!(out, "recordings it holds now:").map_err(output_error)?;
    let mut count = 0u64;
    let now = crate::clock::SystemClock::read();
    let failures = crate::pass::scan_hold(&settings, &policy, &record.hold, now, &mut |item| {
        if item.action == Action::Hold {
            count += 1;
            writeln!(
                out,
                "  {}: {}",
                item.store,
                crate::report::printable(&item.key)
            )?;
        }
        Ok(())
    })
    .await
    .map_err(output_error)?;
    for (store, e) in &failures {
        writeln!(out, "  store {store}: FAILED: {e}").map_err(output_error)?;
    }
    let failed = !failures.is_empty();
    writeln!(out, "{count} recordings").map_err(output_error)?;
    Ok(if failed { Exit::Runtime } else { Exit::Success })
}

/// `lethe hold ...`: places, releases, approves, lists or shows holds.
pub(crate) async fn dispatch(args: &Args, command: HoldCommand, out: &mut dyn Write) -> Outcome {
    match command {
        HoldCommand::Place {
            case,
            reason,
            by,
            subject,
            call_id,
            key,
            prefix,
            recorded_between,
            store,
            review,
            no_scan,
        } => {
            let placement = Placement {
                case,
                reason,
                by,
                subjects: subject,
                call_ids: call_id,
                keys: key,
                prefixes: prefix,
                recorded_between,
                store,
                review,
                no_scan,
            };
            place(args, placement, out).await
        }
        HoldCommand::Release { case, by, reason } => release(args, &case, &by, &reason, out).await,
        HoldCommand::ApproveRelease { case, by } => approve_release(args, &case, &by, out).await,
        HoldCommand::List { all, format } => list(args, all, format, out).await,
        HoldCommand::Show { case } => show(args, &case, out).await,
    }
}
