//! `lethe plan`: scan, classify and decide every store, and print the result.
//! The same streaming pass feeds `lethe run`.

use std::io::Write;

use anyhow::Context;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use tracing::{Instrument, error, info, info_span};

use super::progress::Progress;
use super::{Exit, Format, OrExit, Outcome, load_policy, load_settings, output_error};
use crate::decide::{Planned, StoreStats, check_safety};
use crate::plan::{PlanFailure, Scope, plan_store, review_notices};
use crate::report::{JsonPlan, Limits, PlanSink, TextPlan};

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

/// Writes the deletions of a plan, one canonical JSON line each; the file's
/// SHA-256 is what a run with `--plan` certifies.
struct PlanFile {
    writer: std::io::BufWriter<std::fs::File>,
    sha: sha2::Sha256,
    items: u64,
}

impl PlanFile {
    fn create(path: &Path) -> std::io::Result<Self> {
        use sha2::Digest;
        Ok(Self {
            writer: std::io::BufWriter::new(std::fs::File::create(path)?),
            sha: sha2::Sha256::new(),
            items: 0,
        })
    }

    fn push(&mut self, item: &Planned) -> std::io::Result<()> {
        use sha2::Digest;
        let mut line = crate::certificate::jcs::to_vec(item).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.sha.update(&line);
        self.items += 1;
        self.writer.write_all(&line)
    }

    fn finish(mut self) -> std::io::Result<(u64, String)> {
        use sha2::Digest;
        self.writer.flush()?;
        self.writer.get_ref().sync_all()?;
        Ok((self.items, hex::encode(self.sha.finalize())))
    }
}

pub(crate) async fn plan(
    config: &Path,
    as_of: Option<&str>,
    format: Format,
    plan_file: Option<&Path>,
    out: &mut dyn Write,
) -> Outcome {
    let settings = load_settings(config)?;
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
    let mut notices = review_notices(&orders.holds, now);
    notices.extend(
        policy
            .warnings()
            .into_iter()
            .map(|w| format!("policy: {w}")),
    );
    sink.begin(now, &policy.files, &notices)
        .map_err(output_error)?;
    let mut planned = Vec::new();
    let mut failed = false;
    let mut contradiction = false;
    for sc in &settings.stores {
        let span = info_span!("store", store = %sc.name);
        let store = crate::pass::open_store(&settings, sc).map_err(|e| e.to_string());
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
                contradiction = true;
                Err(conflict.clone())
            }
            _ => store,
        };
        sink.store_begin(
            &sc.name,
            &url,
            deletion.as_ref().and_then(|d| d.as_ref().ok()),
        )
        .map_err(output_error)?;
        let result = match &store {
            Ok(store) => {
                plan_store(
                    store,
                    &policy,
                    &orders,
                    now,
                    Scope::default(),
                    &progress,
                    &mut |item| {
                        if item.action == crate::decide::Action::Delete
                            && let Some(f) = file.as_mut()
                        {
                            f.push(item)?;
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
                sink.store_end(&plan.stats, None).map_err(output_error)?;
                planned.push((sc.name.clone(), plan.stats));
            }
            Err(PlanFailure::Store(e)) => {
                span.in_scope(|| error!(error = %e, "store failed; nothing in it is planned"));
                sink.store_end(&StoreStats::default(), Some(&e))
                    .map_err(output_error)?;
                failed = true;
            }
            Err(PlanFailure::Sink(e)) => return Err(output_error(e)),
        }
    }
    let breaches = check_safety(
        planned.iter().map(|(n, s)| (n.as_str(), s)),
        settings.safety,
    );
    sink.end(
        &breaches,
        Limits {
            max_deletions: settings.safety.max_deletions,
            max_fraction: settings.safety.max_fraction,
        },
    )
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
    Ok(if contradiction {
        Exit::Usage
    } else if failed {
        Exit::Runtime
    } else {
        Exit::Success
    })
}
