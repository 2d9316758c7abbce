//! `lethe plan`: scan, classify and decide every store, and print the result.
//! The same streaming pass feeds `lethe run`.

use std::io::Write;

use anyhow::Context;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use tracing::{Instrument, error, info, info_span};

use super::progress::Progress;
use super::{Exit, Format, OrExit, Outcome, load_policy, load_settings, output_error};
use crate::classify::{Classified, classify};
use crate::decide::{Orders, Planned, Shard, StoreStats, check_safety, plan_item};
use crate::hold::Hold;
use crate::policy::Policy;
use crate::report::{JsonPlan, Limits, PlanSink, TextPlan};
use crate::scan::{Scanned, scan};
use crate::store::Store;

/// Sidecar reads in flight per store.
const SCAN_CONCURRENCY: usize = 16;

/// Why planning a store stopped.
pub(crate) enum PlanFailure {
    /// The store could not be listed: nothing in it may be deleted.
    Store(String),
    /// The consumer of the items failed (output closed, spool full).
    Sink(std::io::Error),
}

/// Streams one store through scan, classify and decide, handing each plan
/// item to `on_item`. Memory does not grow with the store.
pub(crate) async fn plan_store(
    store: &Store,
    policy: &Policy,
    orders: &Orders,
    now: DateTime<Utc>,
    shard: Option<Shard>,
    progress: &Progress,
    on_item: &mut dyn FnMut(&Planned) -> std::io::Result<()>,
) -> Result<StoreStats, PlanFailure> {
    let mut stats = StoreStats::default();
    progress.store(store.name());
    let mut entries = std::pin::pin!(scan(store, policy, SCAN_CONCURRENCY));
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| PlanFailure::Store(e.to_string()))?;
        progress.scanned();
        if let Some(shard) = shard {
            let key = match &entry {
                Scanned::Candidate(c) => c.object.location.as_ref(),
                Scanned::Unmatched(m) | Scanned::Owned(m) => m.location.as_ref(),
                Scanned::Problem { name, .. } => name.as_str(),
            };
            if !shard.owns(store.name(), key) {
                continue;
            }
        }
        match classify(entry, policy) {
            Classified::Owned(_) => stats.count_owned(),
            classified => {
                if let Some(item) = plan_item(store.name(), classified, policy, orders, now) {
                    stats.count(&item);
                    on_item(&item).map_err(PlanFailure::Sink)?;
                }
            }
        }
    }
    info!(
        store = store.name(),
        listed = stats.listed,
        delete = stats.delete,
        keep = stats.keep,
        report = stats.report,
        "store planned"
    );
    Ok(stats)
}

/// Holds past their review date: reported in every plan, never released by themselves.
pub(crate) fn review_notices(holds: &[Hold], now: DateTime<Utc>) -> Vec<String> {
    holds
        .iter()
        .filter_map(|h| {
            let review = h.review?;
            (review < now.date_naive()).then(|| {
                format!(
                    "hold {} was due for review on {review}; it stays in force until released",
                    h.case
                )
            })
        })
        .collect()
}

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

/// A plan approved for execution: the deletions `plan --out` wrote, pinned by
/// the file's SHA-256. Held as 16-byte digests of "store\0key", so that a
/// million approved deletions take tens of megabytes, not a copy of each key.
pub(crate) struct ApprovedPlan {
    pub sha256: String,
    pub items: u64,
    keys: std::collections::HashSet<[u8; 16]>,
}

fn item_digest(store: &str, key: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(store.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

impl ApprovedPlan {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use sha2::{Digest, Sha256};
        use std::io::BufRead;
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read the approved plan {}", path.display()))?;
        let mut sha = Sha256::new();
        let mut keys = std::collections::HashSet::new();
        let mut items = 0;
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            sha.update(&line);
            let item: Planned = serde_json::from_slice(&line).with_context(|| {
                format!(
                    "{}: line {} is not a planned deletion",
                    path.display(),
                    items + 1
                )
            })?;
            if item.action != crate::decide::Action::Delete {
                anyhow::bail!("{}: line {} is not a deletion", path.display(), items + 1);
            }
            keys.insert(item_digest(&item.store, &item.key));
            items += 1;
        }
        Ok(Self {
            sha256: hex::encode(sha.finalize()),
            items,
            keys,
        })
    }

    pub fn contains(&self, item: &Planned) -> bool {
        self.keys.contains(&item_digest(&item.store, &item.key))
    }
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
        None => Utc::now(),
    };
    let orders = super::read_orders(&settings).await?;
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
    sink.begin(now, &policy.files, &review_notices(&orders.holds, now))
        .map_err(output_error)?;
    let mut planned = Vec::new();
    let mut failed = false;
    let mut contradiction = false;
    for sc in &settings.stores {
        let span = info_span!("store", store = %sc.name);
        let store = super::open_store(&settings, sc).map_err(|e| e.to_string());
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
                plan_store(store, &policy, &orders, now, None, &progress, &mut |item| {
                    if item.action == crate::decide::Action::Delete
                        && let Some(f) = file.as_mut()
                    {
                        f.push(item)?;
                    }
                    sink.item(item)
                })
                .instrument(span.clone())
                .await
            }
            Err(e) => Err(PlanFailure::Store(e.clone())),
        };
        match result {
            Ok(stats) => {
                sink.store_end(&stats, None).map_err(output_error)?;
                planned.push((sc.name.clone(), stats));
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
