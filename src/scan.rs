//! Scanning: a store's listing becomes a stream of candidates.
//!
//! Each listed object is matched against the policy's key patterns. An object
//! that a rule's `match` accepts is a recording candidate, and its sidecars are
//! read (with bounded concurrency, in listing order). Objects shaped like a
//! sidecar or companion belong to a recording and are never candidates on
//! their own. Nothing is collected: the output is a stream as long as the
//! listing, and memory stays bounded whatever the store's size.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::ObjectMeta;

use crate::policy::{Policy, RuleMatch};
use crate::store::{Listed, ListingOrder, Store, StoreError};

/// Sidecars larger than this are not read; their recordings are kept and reported.
pub const SIDECAR_LIMIT: u64 = 1024 * 1024;

/// What the scan found for one listing entry.
#[derive(Debug)]
pub enum Scanned<'p> {
    /// A recording, matched by at least one rule.
    Candidate(Candidate<'p>),
    /// An object no rule matches.
    Unmatched(ObjectMeta),
    /// A sidecar or companion: deleted with its recording, never alone.
    Owned(ObjectMeta),
    /// An entry the store could not handle safely.
    Problem {
        name: String,
        reason: String,
        kind: crate::store::ProblemKind,
    },
}

#[derive(Debug)]
pub struct Candidate<'p> {
    pub object: ObjectMeta,
    pub matches: Vec<RuleMatch<'p>>,
    pub sidecars: Vec<SidecarRead>,
}

#[derive(Debug)]
pub struct SidecarRead {
    pub key: String,
    pub state: SidecarState,
}

#[derive(Debug)]
pub enum SidecarState {
    Absent,
    Present {
        meta: ObjectMeta,
        bytes: Bytes,
    },
    /// Refused: too large, or not a file lethe may read (a link, say).
    Unreadable(String),
    /// The store failed to answer (an error, a time-out, access denied): a
    /// failure of this run, which the next one retries.
    Failed(String),
}

/// Streams `store` through the policy's patterns. Sidecar reads run up to
/// `concurrency` at a time; the output keeps the listing's order. A sidecar
/// that the listing shows to be absent is not fetched (see [`Folder`]).
pub fn scan<'a>(
    store: &'a Store,
    policy: &'a Policy,
    concurrency: usize,
) -> impl Stream<Item = Result<Scanned<'a>, StoreError>> + 'a {
    let mut folder = Folder::new(store.listing_order());
    store
        .list()
        .map(move |listed| {
            // In listing order: what the listing says of each sidecar.
            let prepared = prepare(store, policy, &mut folder, listed);
            async move {
                let (meta, matches, sidecars) = match prepared? {
                    Prepared::Skip => return Ok(None),
                    Prepared::Done(scanned) => return Ok(Some(scanned)),
                    Prepared::Candidate(meta, matches, sidecars) => (meta, matches, sidecars),
                };
                let mut reads = Vec::with_capacity(sidecars.len());
                for (key, listed) in sidecars {
                    let state = if listed == Some(false) {
                        SidecarState::Absent
                    } else {
                        match store.get_small(&key, SIDECAR_LIMIT).await {
                            Ok(None) => SidecarState::Absent,
                            Ok(Some((meta, bytes))) => SidecarState::Present { meta, bytes },
                            Err(e @ StoreError::Refused { .. }) => {
                                SidecarState::Unreadable(e.to_string())
                            }
                            Err(e) => SidecarState::Failed(e.to_string()),
                        }
                    };
                    reads.push(SidecarRead { key, state });
                }
                Ok(Some(Scanned::Candidate(Candidate {
                    object: meta,
                    matches,
                    sidecars: reads,
                })))
            }
        })
        .buffered(concurrency.max(1))
        .filter_map(|r| std::future::ready(r.transpose()))
}

enum Prepared<'p> {
    /// Nothing to report (a note about the listing's order).
    Skip,
    Done(Scanned<'p>),
    /// A recording and its sidecar keys, each with what the listing says:
    /// `Some(false)` absent, anything else to be fetched.
    Candidate(ObjectMeta, Vec<RuleMatch<'p>>, Vec<(String, Option<bool>)>),
}

fn prepare<'p>(
    store: &Store,
    policy: &'p Policy,
    folder: &mut Folder,
    listed: Result<Listed, StoreError>,
) -> Result<Prepared<'p>, StoreError> {
    let meta = match listed? {
        Listed::Object(meta) => meta,
        Listed::Problem { name, reason, kind } => {
            folder.problem(&name);
            return Ok(Prepared::Done(Scanned::Problem { name, reason, kind }));
        }
        Listed::Unordered { folder: dir } => {
            folder.unordered(&dir);
            return Ok(Prepared::Skip);
        }
    };
    let key = meta.location.as_ref();
    folder.observe(key).map_err(|message| StoreError::List {
        store: store.name().to_string(),
        source: message.into(),
    })?;
    let matches = policy.matches(store.name(), key);
    if matches.is_empty() {
        return Ok(Prepared::Done(if policy.is_owned(store.name(), key) {
            Scanned::Owned(meta)
        } else {
            Scanned::Unmatched(meta)
        }));
    }
    let mut sidecars: Vec<(String, Option<bool>)> = Vec::new();
    for m in &matches {
        let Some(template) = &m.rule.sidecar else {
            continue;
        };
        let recorded = match (m.rule.pattern.date_format(), m.captures.get("recorded")) {
            (Some(f), Some(raw)) => f.parse_value(raw).ok(),
            _ => None,
        };
        let Some(sidecar_key) = template.render(&m.captures, recorded) else {
            // Only an unparsable date can prevent rendering; classify reports it.
            continue;
        };
        if sidecar_key == key || sidecars.iter().any(|(k, _)| *k == sidecar_key) {
            continue;
        }
        let listed = folder.listed_before(key, &sidecar_key);
        sidecars.push((sidecar_key, listed));
    }
    Ok(Prepared::Candidate(meta, matches, sidecars))
}

/// What the listing has shown of the folder it is in, so that a recording's
/// sidecar need not be fetched when the listing proves it absent.
///
/// A store that keeps an order ([`ListingOrder`]) lists every key after the
/// one before it, in that order, and a folder's whole subtree in one
/// stretch, subfolders interleaved. So when a recording `D/r` is listed, a
/// sidecar `D/s` with `s < r` has already been listed, in the current
/// stretch of `D`, if it exists. The inference is made only then: not for a
/// sidecar in another folder or sorting after the recording, not when `D`
/// was left for a subfolder and came back (its first stretch is forgotten),
/// not after a problem entry in `D`, not in a folder the listing calls
/// unordered, not in a store that keeps no order, and not for a sidecar
/// sorting before the last [`WINDOW`] names (only those are remembered, so
/// memory stays flat in a folder of millions).
///
/// The inference holds only if the whole listing keeps the order, so every
/// key is compared with the key listed before it, across folders (`a.wav`,
/// then `x/z.wav`, then `a.json` is caught at `a.json`). A key out of order
/// after an inference fails the store's listing, so nothing in it is deleted
/// on the inference's strength; before any inference it turns inference off
/// for the rest of the listing. The local walk's unordered folders (files
/// in the file system's order, then subfolders in the file system's order)
/// are exempt, except between keys of one of their subfolders, which is
/// walked in order.
struct Folder {
    order: ListingOrder,
    /// The key listed last (`has_last`), for the order check.
    last: String,
    has_last: bool,
    /// Folders the local walk announced unordered, outermost first, that
    /// the listing is still inside of.
    unordered_roots: Vec<String>,
    /// A stretch of `dir` is under way.
    started: bool,
    dir: String,
    /// The last [`WINDOW`] names of this stretch, in increasing order.
    names: std::collections::VecDeque<String>,
    /// Names of this stretch were dropped from the front of `names`.
    dropped: bool,
    /// No inference in this stretch (returned to, a problem seen).
    tainted: bool,
    /// The listing said this stretch is in no particular order.
    unordered: bool,
    /// Folders left for one of their subfolders, outermost first.
    suspended: Vec<String>,
    inferred: bool,
    disabled: bool,
}

/// Names remembered per folder stretch: a sidecar sorting before all of
/// them is fetched, not inferred.
const WINDOW: usize = 4096;

fn split(key: &str) -> (&str, &str) {
    key.rsplit_once('/').unwrap_or(("", key))
}

fn inside(dir: &str, ancestor: &str) -> bool {
    ancestor.is_empty()
        || dir
            .strip_prefix(ancestor)
            .is_some_and(|r| r.starts_with('/'))
}

/// Whether `key` lies in `root` or below it.
fn under(key: &str, root: &str) -> bool {
    let dir = split(key).0;
    dir == root || inside(dir, root)
}

/// The subfolder of `root` that `key` lies in, if it is not a file of `root` itself.
fn subfolder<'k>(root: &str, key: &'k str) -> Option<&'k str> {
    let rest = if root.is_empty() {
        key
    } else {
        key.strip_prefix(root)?.strip_prefix('/')?
    };
    rest.split_once('/').map(|(first, _)| first)
}

impl Folder {
    fn new(order: ListingOrder) -> Self {
        Self {
            order,
            last: String::new(),
            has_last: false,
            unordered_roots: Vec::new(),
            started: false,
            dir: String::new(),
            names: Default::default(),
            dropped: false,
            tainted: false,
            unordered: false,
            suspended: Vec::new(),
            inferred: false,
            disabled: !order.is_sorted(),
        }
    }

    fn observe(&mut self, key: &str) -> Result<(), String> {
        self.check_order(key)?;
        let (dir, name) = split(key);
        if !self.started || dir != self.dir {
            self.enter(dir);
        } else if self.unordered {
            return Ok(());
        }
        if self.names.len() == WINDOW {
            self.names.pop_front();
            self.dropped = true;
        }
        self.names.push_back(name.to_string());
        Ok(())
    }

    /// `key` must come after the key listed before it, in the store's order.
    fn check_order(&mut self, key: &str) -> Result<(), String> {
        if !self.order.is_sorted() {
            return Ok(());
        }
        while let Some(root) = self.unordered_roots.last() {
            if under(key, root) {
                break;
            }
            self.unordered_roots.pop();
        }
        let exempt = self.unordered_roots.last().is_some_and(|root| {
            under(&self.last, root)
                && (subfolder(root, &self.last).is_none()
                    || subfolder(root, &self.last) != subfolder(root, key))
        });
        let in_order =
            !self.has_last || exempt || self.order.cmp(&self.last, key) == std::cmp::Ordering::Less;
        if !in_order {
            if self.inferred {
                return Err(format!(
                    "{key} was listed after {}, out of key order ({} order): sidecars were judged absent from this listing, so nothing in this store is deleted this time",
                    self.last,
                    self.order.as_str()
                ));
            }
            self.disabled = true;
        }
        self.last.clear();
        self.last.push_str(key);
        self.has_last = true;
        Ok(())
    }

    fn enter(&mut self, dir: &str) {
        if self.started && inside(dir, &self.dir) {
            self.suspended.push(std::mem::take(&mut self.dir));
        }
        while let Some(top) = self.suspended.last() {
            if top == dir || inside(dir, top) {
                break;
            }
            self.suspended.pop();
        }
        self.tainted = self.suspended.last().is_some_and(|top| top == dir);
        if self.tainted {
            self.suspended.pop();
        }
        self.started = true;
        self.dir = dir.to_string();
        self.names.clear();
        self.dropped = false;
        self.unordered = false;
    }

    /// The listing says `dir`'s files now come in no particular order, and
    /// its subfolders after them, in no particular order either.
    fn unordered(&mut self, dir: &str) {
        if !self.started || dir != self.dir {
            self.enter(dir);
        }
        self.tainted = true;
        self.unordered = true;
        self.names.clear();
        while let Some(root) = self.unordered_roots.last() {
            if root == dir || inside(dir, root) {
                break;
            }
            self.unordered_roots.pop();
        }
        self.unordered_roots.push(dir.to_string());
    }

    /// A problem entry (a link, an unreadable name): no inference in its folder.
    fn problem(&mut self, name: &str) {
        let (dir, _) = split(name);
        if !self.started || dir != self.dir {
            self.enter(dir);
        }
        self.tainted = true;
    }

    /// `Some(false)` when the listing proves `sidecar` absent, given that
    /// `recording` was the last object listed; `None` when it cannot tell.
    fn listed_before(&mut self, recording: &str, sidecar: &str) -> Option<bool> {
        use std::cmp::Ordering::Less;
        let (dir, name) = split(recording);
        let (sdir, sname) = split(sidecar);
        if self.disabled
            || self.tainted
            || sdir != dir
            || dir != self.dir
            || self.order.cmp(sname, name) != Less
        {
            return None;
        }
        if self.dropped
            && self
                .names
                .front()
                .is_none_or(|first| self.order.cmp(sname, first) == Less)
        {
            return None;
        }
        if self
            .names
            .binary_search_by(|n| self.order.cmp(n, sname))
            .is_ok()
        {
            return Some(true);
        }
        self.inferred = true;
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(keys: &[&str]) -> Folder {
        let mut f = Folder::new(ListingOrder::Utf8);
        for k in keys {
            f.observe(k).unwrap();
        }
        f
    }

    #[test]
    fn a_sidecar_sorting_before_its_recording_is_known_from_the_listing() {
        let mut f = listing(&["d/a.json", "d/a.wav"]);
        assert_eq!(f.listed_before("d/a.wav", "d/a.json"), Some(true));
        f.observe("d/b.wav").unwrap();
        assert_eq!(f.listed_before("d/b.wav", "d/b.json"), Some(false));
        // Root-level keys work the same way.
        let mut f = listing(&["a.json", "a.wav", "b.wav"]);
        assert_eq!(f.listed_before("a.wav", "a.json"), Some(true));
        assert_eq!(f.listed_before("b.wav", "b.json"), Some(false));
    }

    #[test]
    fn no_inference_where_the_listing_cannot_tell() {
        let mut f = listing(&["d/a.wav"]);
        // Sorts after the recording: not listed yet.
        assert_eq!(f.listed_before("d/a.wav", "d/a.xml"), None);
        // Another folder.
        assert_eq!(f.listed_before("d/a.wav", "e/a.json"), None);
        // Back in a folder after one of its subfolders: its first stretch is forgotten.
        let mut f = listing(&["d/a.json", "d/b/x.wav", "d/c.wav"]);
        assert_eq!(f.listed_before("d/c.wav", "d/a.json"), None);
        // Root after a subfolder.
        let mut f = listing(&["a.json", "b/x", "c.wav"]);
        assert_eq!(f.listed_before("c.wav", "a.json"), None);
        // A problem entry (a link, say) in the folder.
        let mut f = Folder::new(ListingOrder::Utf8);
        f.problem("d/a.json");
        f.observe("d/a.wav").unwrap();
        assert_eq!(f.listed_before("d/a.wav", "d/a.json"), None);
        // A sibling folder after a subfolder is a new stretch: inference resumes.
        let mut f = listing(&["d/a.wav", "d/b/x.wav", "e/a.json", "e/c.wav"]);
        assert_eq!(f.listed_before("e/c.wav", "e/a.json"), Some(true));
        assert_eq!(f.listed_before("e/c.wav", "e/b.json"), Some(false));
    }

    #[test]
    fn only_the_last_names_of_a_long_folder_are_remembered() {
        let names: Vec<String> = (0..WINDOW + 10).map(|i| format!("d/{i:06}.json")).collect();
        let mut f = listing(&names.iter().map(String::as_str).collect::<Vec<_>>());
        f.observe("d/999999.wav").unwrap();
        assert!(f.names.len() <= WINDOW);
        // Still in the window: present or absent, known from the listing.
        let last = format!("d/{:06}.json", WINDOW + 9);
        assert_eq!(f.listed_before("d/999999.wav", &last), Some(true));
        assert_eq!(
            f.listed_before("d/999999.wav", "d/000500.5.json"),
            Some(false)
        );
        // Dropped from the window: the listing can no longer tell.
        assert_eq!(f.listed_before("d/999999.wav", "d/000000.json"), None);
        assert_eq!(f.listed_before("d/999999.wav", "d/000000.5.json"), None);
    }

    #[test]
    fn no_inference_in_a_folder_the_listing_calls_unordered() {
        let mut f = listing(&["a/x.wav"]);
        assert_eq!(f.listed_before("a/x.wav", "a/w.json"), Some(false));
        f.unordered("d");
        // Names in any order, after an inference elsewhere: not an error.
        for k in ["d/b.wav", "d/a.json", "d/c.wav", "d/a.wav"] {
            f.observe(k).unwrap();
        }
        assert_eq!(f.listed_before("d/a.wav", "d/0.json"), None);
        assert_eq!(f.listed_before("d/c.wav", "d/a.json"), None);
        // Its subfolders and the folders after it are ordered again.
        f.observe("d/e/a.wav").unwrap();
        assert_eq!(f.listed_before("d/e/a.wav", "d/e/0.json"), Some(false));
        f.observe("f/b.wav").unwrap();
        assert_eq!(f.listed_before("f/b.wav", "f/a.json"), Some(false));
        assert!(
            f.observe("f/a.wav").is_err(),
            "out of order where it was not announced"
        );
    }

    #[test]
    fn a_listing_out_of_order_turns_inference_off_or_fails_the_store() {
        let mut f = listing(&["d/b.wav", "d/a.wav"]);
        assert_eq!(f.listed_before("d/a.wav", "d/0.json"), None, "off");
        let mut f = listing(&["d/b.wav"]);
        assert_eq!(f.listed_before("d/b.wav", "d/a.json"), Some(false));
        let err = f.observe("d/a.json").unwrap_err();
        assert!(err.contains("out of key order"), "{err}");
    }

    fn ordered(order: ListingOrder, keys: &[&str]) -> Folder {
        let mut f = Folder::new(order);
        for k in keys {
            f.observe(k).unwrap();
        }
        f
    }

    #[test]
    fn a_key_out_of_order_across_folders_fails_the_store_after_an_inference() {
        // a.wav, then another folder, then a.json: each folder stretch is in
        // order, the listing is not.
        let mut f = ordered(ListingOrder::Utf8, &["a.wav"]);
        assert_eq!(f.listed_before("a.wav", "a.json"), Some(false));
        f.observe("x/01/02/z.wav").unwrap();
        let err = f.observe("a.json").unwrap_err();
        assert!(
            err.contains("a.json was listed after x/01/02/z.wav"),
            "{err}"
        );
        assert!(err.contains("out of key order"), "{err}");
        // The same across sibling folders, and back into a folder left for another.
        let mut f = ordered(ListingOrder::Utf8, &["d/b.wav"]);
        assert_eq!(f.listed_before("d/b.wav", "d/a.json"), Some(false));
        f.observe("e/c.wav").unwrap();
        assert!(f.observe("d/a.json").is_err());
        // Before any inference, disorder across folders turns inference off.
        let mut f = ordered(ListingOrder::Utf8, &["x/z.wav", "a.wav"]);
        assert_eq!(f.listed_before("a.wav", "a.json"), None);
        f.observe("b.wav").unwrap();
        assert_eq!(f.listed_before("b.wav", "a.json"), None, "off for good");
        // A key listed twice is out of order too.
        let mut f = ordered(ListingOrder::Utf8, &["d/b.wav"]);
        assert_eq!(f.listed_before("d/b.wav", "d/a.json"), Some(false));
        assert!(f.observe("d/b.wav").is_err());
    }

    #[test]
    fn keys_are_compared_in_the_order_the_store_lists_in() {
        // Azure lists by UTF-16 code units: 😀 (D83D DE00) before ！ (FF01).
        let azure = [
            "d/y.wav",
            "d/z😀a.json",
            "d/z😀a.wav",
            "d/z！b.json",
            "d/z！b.wav",
        ];
        let mut f = Folder::new(ListingOrder::Utf16);
        for k in &azure[..3] {
            f.observe(k).unwrap();
        }
        assert_eq!(f.listed_before("d/z😀a.wav", "d/z😀a.json"), Some(true));
        f.observe(azure[3]).unwrap();
        f.observe(azure[4]).unwrap();
        assert_eq!(f.listed_before("d/z！b.wav", "d/z！b.json"), Some(true));
        assert_eq!(f.listed_before("d/z！b.wav", "d/z😀b.json"), Some(false));
        // The same listing judged by UTF-8 bytes is out of order.
        let mut f = ordered(ListingOrder::Utf8, &azure[..1]);
        assert_eq!(f.listed_before("d/y.wav", "d/x.json"), Some(false));
        f.observe(azure[1]).unwrap();
        f.observe(azure[2]).unwrap();
        assert!(f.observe(azure[3]).is_err());
        // S3 and GCS list by UTF-8 bytes: ！ (EF BC 81) before 😀 (F0 ...).
        let mut f = ordered(
            ListingOrder::Utf8,
            &["d/y.wav", "d/z！b.json", "d/z！b.wav"],
        );
        assert_eq!(f.listed_before("d/z！b.wav", "d/z！b.json"), Some(true));
        f.observe("d/z😀a.json").unwrap();
        // The local walk lists a subfolder at its name's place, before the
        // names it is a prefix of.
        let walk = ["d/a.wav", "d/b/x.wav", "d/b.json", "d/b.wav"];
        let mut f = ordered(ListingOrder::Walk, &walk[..1]);
        assert_eq!(f.listed_before("d/a.wav", "d/0.json"), Some(false));
        for k in &walk[1..] {
            f.observe(k).unwrap();
        }
        assert_eq!(
            f.listed_before("d/b.wav", "d/b.json"),
            None,
            "d returned to"
        );
        let mut f = ordered(ListingOrder::Utf8, &walk[..1]);
        assert_eq!(f.listed_before("d/a.wav", "d/0.json"), Some(false));
        f.observe(walk[1]).unwrap();
        assert!(f.observe(walk[2]).is_err(), "not in UTF-8 byte order");
    }

    #[test]
    fn a_store_keeping_no_order_never_infers_nor_fails() {
        let mut f = ordered(ListingOrder::Unordered, &["b.wav", "x/z.wav", "a.wav"]);
        assert_eq!(f.listed_before("a.wav", "a.json"), None);
        f.observe("a.json").unwrap();
    }

    #[test]
    fn the_subfolders_of_an_unordered_local_folder_are_still_checked_inside() {
        let mut f = ordered(ListingOrder::Walk, &["a/x.wav"]);
        assert_eq!(f.listed_before("a/x.wav", "a/w.json"), Some(false));
        f.unordered("d");
        // Files, then subfolders, each in the file system's order.
        for k in ["d/z.wav", "d/b.wav", "d/q/b.wav"] {
            f.observe(k).unwrap();
        }
        assert_eq!(f.listed_before("d/q/b.wav", "d/q/a.json"), Some(false));
        f.observe("d/q/c.wav").unwrap();
        f.observe("d/p/a.wav").unwrap();
        f.observe("d/p/b/c.wav").unwrap();
        // Out of order inside one subfolder, which is walked in order.
        assert!(f.observe("d/p/a.json").is_err());
        // Out of order after the unordered folder's subtree.
        let mut f = ordered(ListingOrder::Walk, &["a/x.wav"]);
        assert_eq!(f.listed_before("a/x.wav", "a/w.json"), Some(false));
        f.unordered("d");
        f.observe("d/z.wav").unwrap();
        f.observe("e/b.wav").unwrap();
        assert!(f.observe("c.wav").is_err());
    }
}
