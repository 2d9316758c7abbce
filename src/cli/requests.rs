//! `lethe requests open | list | extend`: the register of data subjects'
//! requests and their Art. 12(3) deadlines, kept in the ledger.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tracing::info;

use super::{
    Exit, Failure, Format, OrExit, Outcome, output_error, required, resolve_settings, usage,
};
use crate::config::Args;
use crate::ledger::{Ledger, Refusal, RequestExtended, RequestOpened};
use crate::report::printable;
use crate::request::{MAX_EXTENSION_MONTHS, Request, RequestKind, Standing};

/// The run id under which the register's rows are recorded.
const REGISTER_RUN: &str = "requests";

fn refused(refusal: Refusal) -> Failure {
    usage(refusal.to_string())
}

/// `--received`: a date (that day, 00:00 UTC) or an RFC 3339 time, not
/// after `now`.
pub(crate) fn parse_received(
    text: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Failure> {
    let Some(text) = text.map(str::trim) else {
        return Ok(None);
    };
    let at = if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
    } else {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                usage(format!(
                    "--received {text:?} is neither a date (2026-03-02) nor an RFC 3339 time (2026-03-02T09:30:00Z)"
                ))
            })?
    };
    if at > now {
        return Err(usage(format!(
            "--received {text} is in the future (now is {})",
            now.format("%Y-%m-%d %H:%M UTC")
        )));
    }
    Ok(Some(at))
}

async fn open_ledger(args: &Args) -> Result<Ledger, Failure> {
    let settings = resolve_settings(args)?;
    Ledger::open(&settings.database)
        .await
        .context("cannot open the ledger; nothing was recorded")
        .or_exit(Exit::Runtime)
}

pub(crate) struct Opening<'a> {
    pub kind: RequestKind,
    pub subject: &'a str,
    pub request: &'a str,
    pub by: &'a str,
    pub received: Option<&'a str>,
}

pub(crate) async fn open(args: &Args, o: Opening<'_>, out: &mut dyn Write) -> Outcome {
    let now = crate::clock::SystemClock::read();
    let opened = RequestOpened {
        request: required("request", o.request)?,
        kind: o.kind,
        subject_sha256: crate::hold::subject_digest(&required("subject", o.subject)?),
        received: parse_received(o.received, now)?.unwrap_or(now),
        by: Some(required("by", o.by)?),
    };
    let ledger = open_ledger(args).await?;
    let (request, new) = ledger
        .open_request(REGISTER_RUN, &opened)
        .await
        .context("cannot register the request")
        .or_exit(Exit::Runtime)?
        .map_err(refused)?;
    ledger.close().await;
    info!(
        request = %request.request,
        kind = %request.kind,
        deadline = %request.deadline(),
        "request registered"
    );
    writeln!(
        out,
        "{} request {} {}: received {}, answer by {} (GDPR Art. 12(3))",
        request.kind,
        printable(&request.request),
        if new {
            "registered"
        } else {
            "was already registered"
        },
        request.received.format("%Y-%m-%d"),
        request.deadline()
    )
    .map_err(output_error)?;
    Ok(Exit::Success)
}

pub(crate) async fn extend(
    args: &Args,
    request: &str,
    by: &str,
    reason: &str,
    months: u32,
    out: &mut dyn Write,
) -> Outcome {
    let now = crate::clock::SystemClock::read();
    let extension = RequestExtended {
        request: required("request", request)?,
        months,
        by: required("by", by)?,
        reason: required("reason", reason)?,
        at: now,
    };
    if !(1..=MAX_EXTENSION_MONTHS).contains(&months) {
        return Err(usage(format!(
            "--months is 1 to {MAX_EXTENSION_MONTHS} (Art. 12(3) allows up to two further months), not {months}"
        )));
    }
    let ledger = open_ledger(args).await?;
    let extended = ledger
        .extend_request(REGISTER_RUN, &extension, |r| {
            r.refuses_extension(months, now)
        })
        .await
        .context("cannot record the extension")
        .or_exit(Exit::Runtime)?
        .map_err(refused)?;
    ledger.close().await;
    info!(request = %extended.request, deadline = %extended.deadline(), "request extended");
    writeln!(
        out,
        "request {} extended by {months} month(s): answer by {} (tell the subject, with the reasons, by {})",
        printable(&extended.request),
        extended.deadline(),
        extended.first_deadline()
    )
    .map_err(output_error)?;
    Ok(Exit::Success)
}

/// A register line as `requests list --format json` writes it.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    request: &'a Request,
    deadline: NaiveDate,
    standing: Standing,
}

/// The register as the ledger has it; empty when there is no ledger yet.
pub(crate) async fn register(args: &Args) -> Result<Vec<Request>, Failure> {
    let Some(ledger) = super::existing_ledger(args).await? else {
        return Ok(Vec::new());
    };
    let requests = ledger
        .requests()
        .await
        .context("cannot read the register")
        .or_exit(Exit::Runtime)?;
    ledger.close().await;
    Ok(requests)
}

pub(crate) async fn list(args: &Args, all: bool, format: Format, out: &mut dyn Write) -> Outcome {
    let now = crate::clock::SystemClock::read();
    let requests = register(args).await?;
    let lines: Vec<Line> = requests
        .iter()
        .map(|r| Line {
            request: r,
            deadline: r.deadline(),
            standing: r.standing(now),
        })
        .filter(|l| all || matches!(l.standing, Standing::Open | Standing::Late))
        .collect();
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut *out, &lines).map_err(|e| output_error(e.into()))?;
        writeln!(out).map_err(output_error)?;
        return Ok(Exit::Success);
    }
    if lines.is_empty() {
        writeln!(
            out,
            "{}",
            if all {
                "no requests"
            } else {
                "no open requests"
            }
        )
        .map_err(output_error)?;
    }
    for l in &lines {
        let r = l.request;
        let answered = match &r.answered {
            Some(a) => format!(", answered {} by {}", a.at.format("%Y-%m-%d"), a.by),
            None => String::new(),
        };
        // Ids, names and reasons are as typed: no control character reaches
        // the terminal.
        writeln!(
            out,
            "{}  {}  {}: received {}, deadline {}{}{answered}",
            printable(&r.request),
            r.kind,
            l.standing.as_str(),
            r.received.format("%Y-%m-%d"),
            l.deadline,
            match &r.extension {
                Some(e) => format!(
                    " (extended by {} month(s) on {} by {}: {})",
                    e.months,
                    e.at.format("%Y-%m-%d"),
                    printable(&e.by),
                    printable(&e.reason)
                ),
                None => String::new(),
            },
        )
        .map_err(output_error)?;
    }
    Ok(Exit::Success)
}
