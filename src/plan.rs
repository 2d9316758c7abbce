//! A store's plan: scan -> classify -> decide -> claims, streamed.
//!
//! [`plan_store`] is what `lethe plan`, `lethe run`, `lethe erase` and
//! `lethe hold place` all use to learn what a pass would do to one store, so
//! that they reach the same decision for the same inputs. It runs in two
//! steps with bounded memory. First every listed object is classified and
//! decided: items that stay are handed out at once and record their claims
//! (see [`crate::claims`]); delete items go to an unnamed spool file and
//! record what they need; every other listed object records that it exists.
//! Then the claims are resolved, and the delete items are read back and
//! handed out with whatever something else still keeps taken out of them, or
//! kept whole, and with the companions the listing showed
//! ([`Planned::companion_objects`]): the only companions a run deletes.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use tracing::info;

use crate::claims::{Blocked, Claims, Part, Seen, Strength};
use crate::classify::{Classified, classify};
use crate::decide::{Action, KeptObject, Orders, Planned, Shard, StoreStats, any_item, in_scope};
use crate::policy::Policy;
use crate::report::printable;
use crate::scan::{Scanned, scan};
use crate::store::{ObjectRef, Store};

/// Sidecar reads in flight per store.
const SCAN_CONCURRENCY: usize = 16;

/// Why planning a store stopped.
#[derive(Debug)]
pub enum PlanFailure {
    /// The store could not be listed: nothing in it may be deleted.
    Store(String),
    /// The consumer of the items failed (output closed, spool full), or a
    /// spooled item could not be read back.
    Sink(std::io::Error),
}

/// Told as planning goes, for a progress display.
pub trait Progress {
    fn store(&self, _name: &str) {}
    fn scanned(&self) {}
    /// A counter the executor adds each recording deleted to, if shown.
    fn deletions(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicU64>> {
        None
    }
}

/// No progress display.
pub struct Quiet;
impl Progress for Quiet {}

/// Which part of a store a pass acts on.
#[derive(Default, Clone, Copy)]
pub struct Scope<'a> {
    /// Only this share of the recordings.
    pub shard: Option<Shard>,
    /// Only the deletions of this approved plan; others due now wait.
    pub approved: Option<&'a ApprovedPlan>,
}

/// What planning a store found.
#[derive(Debug, Clone, Default)]
pub struct StorePlan {
    pub stats: StoreStats,
    /// Deletions due now that the approved plan does not contain.
    pub withheld: u64,
}

/// Streams one store through scan, classify, decide and the claims of every
/// object on every other, handing each plan item of the scope to `on_item`:
/// first what stays, then the deletions. Memory does not grow with the store.
pub async fn plan_store(
    store: &Store,
    policy: &Policy,
    orders: &Orders,
    now: DateTime<Utc>,
    scope: Scope<'_>,
    progress: &dyn Progress,
    on_item: &mut dyn FnMut(&Planned) -> std::io::Result<()>,
) -> Result<StorePlan, PlanFailure> {
    let mut plan = StorePlan::default();
    progress.store(store.name());
    let mut claims = Claims::new(store.name());
    let mut deletes = Spool::new().map_err(PlanFailure::Sink)?;
    let mut entries = std::pin::pin!(scan(store, policy, SCAN_CONCURRENCY));
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| PlanFailure::Store(e.to_string()))?;
        progress.scanned();
        let key = match &entry {
            Scanned::Candidate(c) => c.object.location.as_ref(),
            Scanned::Unmatched(m) | Scanned::Owned(m) => m.location.as_ref(),
            Scanned::Problem { name, .. } => name.as_str(),
        };
        // Objects outside the shard are not planned here, but still claim
        // what they keep: a recording of another shard keeps its companions.
        let mine = scope.shard.is_none_or(|s| s.owns(store.name(), key));
        // What a companion need is matched with: the listing showed it.
        if let Scanned::Owned(meta) | Scanned::Unmatched(meta) = &entry {
            claims.exists(meta).map_err(PlanFailure::Sink)?;
        }
        let doubt = matches!(entry, Scanned::Problem { .. });
        let classified = classify(entry, policy);
        if let Classified::Owned(_) = classified {
            if mine {
                plan.stats.count_owned();
            }
            continue;
        }
        let Some(mut item) = any_item(store.name(), classified, policy, orders, now) else {
            continue;
        };
        let planned = mine && in_scope(&item, orders);
        if planned
            && item.action == Action::Delete
            && scope.approved.is_some_and(|a| !a.contains(&item))
        {
            withhold(&mut item);
            plan.withheld += 1;
        }
        if planned && item.action == Action::Delete {
            let index = deletes.len();
            for (part, key) in item.objects().enumerate() {
                if item.companion_at(part).is_some() {
                    claims.need_listed(key, index, part as u32)
                } else {
                    claims.need(key, index, part as u32)
                }
                .map_err(PlanFailure::Sink)?;
            }
            deletes.push(&item).map_err(PlanFailure::Sink)?;
            continue;
        }
        if item.action != Action::Delete {
            claim_all(&mut claims, &item, doubt).map_err(PlanFailure::Sink)?;
        }
        if planned {
            plan.stats.count(&item);
            on_item(&item).map_err(PlanFailure::Sink)?;
        }
    }
    // Resolve in rounds: a deletion kept whole (its own key is claimed)
    // claims its objects in turn, for the deletions still to be judged. The
    // first round also says which companions the listing showed; later
    // rounds need only those.
    let (mut kept_whole, mut kept_objects) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut blocked = claims.resolve().map_err(PlanFailure::Sink)?;
        if blocked.is_empty() {
            break;
        }
        let mut next_claims = Claims::new(store.name());
        let mut next = Spool::new().map_err(PlanFailure::Sink)?;
        let mut whole = 0u64;
        for (index, item) in deletes.into_items().map_err(PlanFailure::Sink)?.enumerate() {
            let mut item = item.map_err(PlanFailure::Sink)?;
            let resolved = blocked.of(index as u64).map_err(PlanFailure::Sink)?;
            let blocks = resolved.blocked;
            if blocks
                .iter()
                .any(|b| b.part == 0 && b.strength == Strength::Shared)
            {
                // The same key listed twice: the first listing's deletion stands.
                continue;
            }
            if first {
                set_listed(&mut item, resolved.listed);
            }
            if !blocks.is_empty() && apply(&mut item, blocks) {
                whole += 1;
                claim_all(&mut next_claims, &item, false).map_err(PlanFailure::Sink)?;
                plan.stats.count(&item);
                on_item(&item).map_err(PlanFailure::Sink)?;
                continue;
            }
            let position = next.len();
            for (part, key) in item.objects().enumerate() {
                next_claims
                    .need(key, position, part as u32)
                    .map_err(PlanFailure::Sink)?;
            }
            next.push(&item).map_err(PlanFailure::Sink)?;
        }
        kept_whole += whole;
        deletes = next;
        claims = next_claims;
        first = false;
        if whole == 0 {
            break;
        }
    }
    for item in deletes.into_items().map_err(PlanFailure::Sink)? {
        let mut item = item.map_err(PlanFailure::Sink)?;
        // The claims were resolved: a companion the first round did not
        // hand back as listed (all of them, if it handed back nothing) is
        // absent from the store, and has nothing to delete.
        item.companion_objects.get_or_insert_with(Vec::new);
        kept_objects += item.kept.len() as u64;
        plan.stats.count(&item);
        on_item(&item).map_err(PlanFailure::Sink)?;
    }
    info!(
        store = store.name(),
        listed = plan.stats.listed,
        delete = plan.stats.delete,
        keep = plan.stats.keep,
        report = plan.stats.report,
        kept_by_claims = kept_whole,
        objects_kept_by_claims = kept_objects,
        "store planned"
    );
    Ok(plan)
}

/// A deletion due now that waits for approval is kept this time.
fn withhold(item: &mut Planned) {
    item.action = Action::Keep;
    item.code = "not-approved".into();
    item.reason = format!(
        "kept: due now ({}), but not in the approved plan",
        item.reason
    );
    item.expires_at = None;
}

/// What an item that stays keeps: itself, and its sidecars and companions.
fn claim_all(claims: &mut Claims, item: &Planned, doubt: bool) -> std::io::Result<()> {
    let reason = item.reason.trim_start_matches("kept: ");
    let strength = if doubt {
        Strength::Doubt
    } else {
        Strength::Keeps
    };
    let own = if doubt {
        format!("it cannot be checked ({reason})")
    } else if item.rules.is_empty() {
        format!("it matches no rule and is kept ({reason})")
    } else {
        format!("it is also a recording, {reason}")
    };
    claims.claim(&item.key, strength, own)?;
    let sidecars = item.sidecars.len();
    for (i, key) in item.objects().enumerate().skip(1) {
        let role = if i <= sidecars {
            "sidecar"
        } else {
            "companion"
        };
        claims.claim(
            key,
            Strength::Keeps,
            format!("it is a {role} of {}, {reason}", printable(&item.key)),
        )?;
    }
    Ok(())
}

/// Records on a delete item the companions the listing showed (parts
/// numbered as [`Planned::objects`] numbers them), before anything is taken
/// out of it.
fn set_listed(item: &mut Planned, listed: Vec<(Part, Seen)>) {
    let objects = listed
        .into_iter()
        .filter_map(|(part, seen)| {
            let key = item.companion_at(part as usize)?;
            Some(ObjectRef {
                key: key.clone(),
                size: seen.size,
                e_tag: seen.e_tag,
                last_modified: seen.last_modified,
            })
        })
        .collect();
    item.companion_objects = Some(objects);
}

/// Takes out of a delete item what claims keep. Returns whether the whole
/// recording is kept: when its own key is claimed, or when one of its
/// objects cannot be checked.
fn apply(item: &mut Planned, blocks: Vec<Blocked>) -> bool {
    let keys: Vec<String> = item.objects().map(str::to_string).collect();
    let whole = blocks
        .iter()
        .find(|b| b.part == 0 && b.strength != Strength::Shared)
        .or_else(|| blocks.iter().find(|b| b.strength == Strength::Doubt));
    if let Some(b) = whole {
        let key = &keys[b.part as usize];
        if b.strength == Strength::Doubt {
            item.action = Action::Report;
            item.code = "companion-unchecked".into();
            item.reason = format!(
                "kept: its object {} is not deleted, as {}",
                printable(key),
                b.claim
            );
        } else {
            item.action = Action::Keep;
            item.code = "claimed".into();
            item.reason = format!("kept: its own retention ended, but {}", b.claim);
        }
        item.expires_at = None;
        item.companion_objects = None;
        return true;
    }
    let sidecars = item.sidecars.len();
    let mut parts: Vec<u32> = blocks.iter().map(|b| b.part).collect();
    parts.sort_unstable();
    parts.dedup();
    // A part another deletion removes leaves quietly; a kept one is said.
    for b in blocks.iter().filter(|b| b.strength == Strength::Keeps) {
        if !item.kept.iter().any(|k| k.key == keys[b.part as usize]) {
            item.kept.push(KeptObject {
                key: keys[b.part as usize].clone(),
                claim: b.claim.clone(),
            });
        }
    }
    // Remove from the back, so that earlier positions stay valid.
    for part in parts.into_iter().rev() {
        let i = part as usize;
        if i <= sidecars {
            item.sidecars.remove(i - 1);
        } else {
            let key = item.companions.remove(i - 1 - sidecars);
            if let Some(objects) = &mut item.companion_objects {
                objects.retain(|o| o.key != key);
            }
        }
    }
    false
}

/// Holds past their review date: reported in every plan, never released by themselves.
pub fn review_notices(holds: &[crate::hold::Hold], now: DateTime<Utc>) -> Vec<String> {
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

/// Why an approved plan cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ApprovedPlanError {
    #[error("cannot read the approved plan {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: line {line} is not a planned deletion: {detail}")]
    Line {
        path: String,
        line: u64,
        detail: String,
    },
    #[error("{path}: line {line} is not a deletion")]
    NotDeletion { path: String, line: u64 },
}

/// A plan approved for execution: the deletions `plan --out` wrote, pinned by
/// the file's SHA-256. Held as 16-byte digests of "store\0key", so that a
/// million approved deletions take tens of megabytes, not a copy of each key.
pub struct ApprovedPlan {
    pub sha256: String,
    pub items: u64,
    keys: std::collections::HashSet<[u8; 16]>,
}

impl ApprovedPlan {
    pub fn load(path: &Path) -> Result<Self, ApprovedPlanError> {
        use sha2::{Digest, Sha256};
        let shown = path.display().to_string();
        let read = |source| ApprovedPlanError::Read {
            path: shown.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut sha = Sha256::new();
        let mut keys = std::collections::HashSet::new();
        let mut items = 0;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(read)? == 0 {
                break;
            }
            sha.update(&line);
            let item: Planned =
                serde_json::from_slice(&line).map_err(|e| ApprovedPlanError::Line {
                    path: shown.clone(),
                    line: items + 1,
                    detail: e.to_string(),
                })?;
            if item.action != Action::Delete {
                return Err(ApprovedPlanError::NotDeletion {
                    path: shown.clone(),
                    line: items + 1,
                });
            }
            keys.insert(crate::claims::digest(&item.store, &item.key));
            items += 1;
        }
        Ok(Self {
            sha256: hex::encode(sha.finalize()),
            items,
            keys,
        })
    }

    pub fn contains(&self, item: &Planned) -> bool {
        self.keys
            .contains(&crate::claims::digest(&item.store, &item.key))
    }
}

/// Plan items spilled to a temporary file: the deletions of a store between
/// their decision and their claims, and between planning and execution (so
/// that the safety limits can be checked on the whole plan without holding
/// it in memory). The file has no name (it is unlinked as it is created), so
/// that no copy of the plan outlives the process, even one killed with
/// SIGKILL.
pub struct Spool {
    writer: BufWriter<std::fs::File>,
    count: u64,
}

impl Spool {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            writer: BufWriter::new(tempfile::tempfile()?),
            count: 0,
        })
    }

    pub fn push(&mut self, item: &Planned) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.writer, item)?;
        self.writer.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The spooled items, in order; a line that cannot be read back is an
    /// error, never skipped. The file's space is freed when the iterator is
    /// dropped.
    pub fn into_items(
        self,
    ) -> std::io::Result<impl Iterator<Item = std::io::Result<Planned>> + Send> {
        use std::io::Seek;
        let mut file = self.writer.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        Ok(BufReader::new(file).lines().map(|line| {
            let line = line?;
            serde_json::from_str::<Planned>(&line).map_err(|e| {
                std::io::Error::other(format!("a line of the plan spool cannot be read: {e}"))
            })
        }))
    }

    /// The spooled items as a stream, for the executor; it ends at the first
    /// line that cannot be read, and `failed` then says why.
    pub fn into_stream(
        self,
        failed: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    ) -> std::io::Result<impl Stream<Item = Planned>> {
        let lines = self.into_items()?.map_while(move |r| match r {
            Ok(item) => Some(item),
            Err(e) => {
                if let Ok(mut f) = failed.lock() {
                    *f = Some(e.to_string());
                }
                None
            }
        });
        Ok(futures::stream::iter(lines))
    }
}

/// Writes the deletions of a plan, one canonical JSON line each; the file's
/// SHA-256 is what a run with `--plan` certifies.
pub struct PlanFile {
    writer: std::io::BufWriter<std::fs::File>,
    sha: sha2::Sha256,
    items: u64,
}

impl PlanFile {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        use sha2::Digest;
        Ok(Self {
            writer: std::io::BufWriter::new(std::fs::File::create(path)?),
            sha: sha2::Sha256::new(),
            items: 0,
        })
    }

    pub fn push(&mut self, item: &Planned) -> std::io::Result<()> {
        use sha2::Digest;
        let mut line = crate::certificate::jcs::to_vec(item).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.sha.update(&line);
        self.items += 1;
        self.writer.write_all(&line)
    }

    pub fn finish(mut self) -> std::io::Result<(u64, String)> {
        use sha2::Digest;
        self.writer.flush()?;
        self.writer.get_ref().sync_all()?;
        Ok((self.items, hex::encode(self.sha.finalize())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str) -> Planned {
        serde_json::from_value(serde_json::json!({
            "store": "recordings",
            "key": key,
            "action": "delete",
            "code": "expired",
            "reason": "retention ended",
        }))
        .unwrap()
    }

    /// A spool of `a`, then `bad` written raw as its own line, then `c`.
    fn spool_with(bad: &[u8]) -> Spool {
        let mut spool = Spool::new().unwrap();
        spool.push(&item("a")).unwrap();
        spool.writer.write_all(bad).unwrap();
        spool.writer.write_all(b"\n").unwrap();
        spool.push(&item("c")).unwrap();
        spool
    }

    /// Lines that cannot be read back: cut short (a full disk), not JSON,
    /// not a plan item, not UTF-8.
    const BAD: &[&[u8]] = &[
        b"{\"store\":\"recordings\",\"key\":\"b\",\"act",
        b"garbage",
        b"{\"key\":\"b\"}",
        b"\xff\xfe{}",
    ];

    #[test]
    fn a_spool_line_that_cannot_be_read_is_an_error_in_its_place_never_skipped() {
        for bad in BAD {
            let items: Vec<_> = spool_with(bad).into_items().unwrap().collect();
            assert_eq!(items.len(), 3, "{:?}", String::from_utf8_lossy(bad));
            assert_eq!(items[0].as_ref().unwrap().key, "a");
            let e = items[1].as_ref().unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("plan spool") || e.kind() == std::io::ErrorKind::InvalidData,
                "{text}"
            );
            assert_eq!(items[2].as_ref().unwrap().key, "c");
        }
    }

    #[tokio::test]
    async fn the_executors_stream_stops_at_an_unreadable_line_and_says_why() {
        for bad in BAD {
            let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
            let stream = spool_with(bad).into_stream(failed.clone()).unwrap();
            let keys: Vec<String> = stream.map(|i| i.key).collect().await;
            // Nothing after the bad line is handed out: the executor never
            // deletes past what it could not read, and the reason is kept
            // for the run's problems (`StorePass::execute`).
            assert_eq!(keys, ["a"], "{:?}", String::from_utf8_lossy(bad));
            let why = failed.lock().unwrap().clone();
            assert!(why.is_some_and(|w| !w.is_empty()));
        }
    }

    #[test]
    fn a_plan_written_before_companions_were_listed_is_still_approved() {
        // An earlier release's line: companion keys only, no companion_objects.
        let line = r#"{"action":"delete","basis":"b","code":"expired","companions":["transcripts/C-1.txt"],"expires_at":"2025-12-01T00:00:00Z","key":"calls/C-1.wav","object":{"key":"calls/C-1.wav","last_modified":"2025-05-31T00:00:00Z","size":1},"purpose":"quality","reason":"quality expired","recorded_at":"2025-05-31T00:00:00Z","store":"recordings"}"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approved.jsonl");
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let approved = ApprovedPlan::load(&path).unwrap();
        assert_eq!(approved.items, 1);
        let old: Planned = serde_json::from_str(line).unwrap();
        assert_eq!(old.companion_objects, None);
        assert!(approved.contains(&old));
        // Today's plan of the same deletion, its companions resolved, is the
        // same approved deletion.
        let mut today = old.clone();
        today.companion_objects = Some(vec![]);
        assert!(approved.contains(&today));
    }

    #[test]
    fn a_readable_spool_gives_back_every_item_in_order() {
        let mut spool = Spool::new().unwrap();
        let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        for k in &keys {
            spool.push(&item(k)).unwrap();
        }
        assert_eq!(spool.len(), 1000);
        let back: Vec<String> = spool
            .into_items()
            .unwrap()
            .map(|i| i.unwrap().key)
            .collect();
        assert_eq!(back, keys);
    }
}
