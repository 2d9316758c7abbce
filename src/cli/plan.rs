//! `lethe plan`: scan, classify and decide every store, and print the result.
//! The same streaming pass feeds `lethe run`.

use std::io::Write;

use anyhow::Context;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use tracing::info;

use super::progress::Progress;
use super::{Exit, Format, OrExit, Outcome, load_policy, output_error, resolve_settings};
use crate::config::Args;
use crate::plan::PlanFile;
use crate::report::{JsonPlan, PlanSink, TextPlan};

/// `--as-of`: RFC 3339, or a bare date meaning midnight UTC.
pub(crate) fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    anyhow::bail!(
        "--as-of {text:?} is not a time; use RFC 3339 (2027-01-31T12:00:00Z) or a date (2027-01-31)"
    )
}

pub(crate) async fn plan(
    args: &Args,
    as_of: Option<&str>,
    format: Format,
    plan_file: Option<&Path>,
    out: &mut dyn Write,
) -> Outcome {
    let settings = resolve_settings(args)?;
    let policy = load_policy(&settings)?;
    let now = match as_of {
        Some(t) => parse_time(t).or_exit(Exit::Usage)?,
        None => crate::clock::SystemClock::read(),
    };
    let orders = crate::pass::read_orders(&settings)
        .await
        .map_err(super::pass_failure)?;
    let mut file = match plan_file {
        Some(path) => Some(
            PlanFile::create(path)
                .with_context(|| format!("cannot write the plan file {}", path.display()))
                .or_exit(Exit::Runtime)?,
        ),
        None => None,
    };
    let mut progress = Progress::new();
    let mut out = progress.wrap(out);
    let mut sink: Box<dyn PlanSink + '_> = match format {
        Format::Text => Box::new(TextPlan::new(&mut out)),
        Format::Json => Box::new(JsonPlan::new(&mut out)),
    };
    let found = crate::pass::preview(
        &settings,
        &policy,
        &orders,
        now,
        &progress,
        sink.as_mut(),
        &mut |item| match file.as_mut() {
            Some(f) => f.push(item),
            None => Ok(()),
        },
    )
    .await
    .map_err(output_error)?;
    drop(sink);
    out.flush().map_err(output_error)?;
    progress.finish();
    if let (Some(f), Some(path)) = (file, plan_file) {
        let (items, sha256) = f
            .finish()
            .with_context(|| format!("cannot write the plan file {}", path.display()))
            .or_exit(Exit::Runtime)?;
        // Said on stderr, so that a JSON plan on stdout stays one document.
        eprintln!(
            "plan of {items} deletions written to {} (sha256 {sha256}); run it with `lethe run --plan {}`",
            path.display(),
            path.display()
        );
        info!(path = %path.display(), items, sha256 = %sha256, "approved-plan file written");
    }
    Ok(if found.contradiction {
        Exit::Usage
    } else if found.failed {
        Exit::Runtime
    } else {
        Exit::Success
    })
}
