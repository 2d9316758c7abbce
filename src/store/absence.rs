//! Whether deleted objects are gone: a listing of the batch's key range,
//! or a `head` of each.
//!
//! S3, Azure Blob and GCS list consistently after a delete (their
//! statements are quoted in ARCHITECTURE.md), so one listing of the range a
//! batch spans shows which of its keys remain, for one request per 1,000
//! keys listed instead of one per key. The listing starts just before the
//! batch's first key (where the store keeps an order: the key less its last
//! character, so the first key itself is listed) inside the batch's common
//! folder, and stops past its last key. A range too wide to list cheaply
//! (more than [`RANGE_SLACK`] times the batch's keys, a tenth of the
//! requests their `head`s would cost, as when a batch's keys are spread
//! thin among kept objects) is given up for a `head` of each key it did not
//! reach. Keys in folders of different shapes (a batch's sidecars in dated
//! folders, its transcripts in a folder of their own) are listed apart. A store that
//! promises an order but is seen listing out of it is not trusted to have
//! shown the whole range: its keys not seen are checked with a `head`. A
//! listing that fails leaves its keys unchecked (an error each), as a
//! failed `head` does. A local folder is always checked with a `head`
//! (a `stat`), which costs less there than a listing.
//!
//! This is only ever asked whether deleted keys are gone. Which companions
//! exist is not looked up here: the scan's own listing says so, matched to
//! each deletion's companions in `crate::claims`, so a listing that hides a
//! present companion from a lookup cannot make a run delete the recording
//! and leave its companion behind, unreported.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use object_store::ObjectMeta;

use super::{Listed, Store};

/// How the absence of a deleted object is verified in a store, and how
/// one outcome was (`execute::Outcome::verified_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// A listing of each batch's key range.
    Listing,
    /// A `head` (on a local folder, a `stat`) of each object.
    Head,
}

impl Verification {
    /// What a certificate says of it.
    pub fn statement(self) -> &'static str {
        match self {
            Verification::Listing => {
                "absence verified by a listing of each batch's key range (a head of each key where the range was too wide, the store did not confirm the delete, or a run was interrupted)"
            }
            Verification::Head => "absence verified by a head of each object",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Listing => "listing",
            Verification::Head => "head",
        }
    }
}

/// Whether a key is present (or why that is unknown), and how it was found.
pub type Presence = (std::result::Result<bool, String>, Verification);

/// A range listing may list this many entries per key it checks (plus
/// [`RANGE_BASE`]) before it gives up for `head`s: at 1,000 entries a page,
/// a tenth of the requests the `head`s would cost.
pub const RANGE_SLACK: usize = 100;
const RANGE_BASE: usize = 2000;

/// The keys' indices, grouped by the shape of their folder (its path with
/// every digit alike): a batch's recordings across dated folders
/// (`calls/quality/2024/05/01/`, `.../06/02/`) are listed in one range, its
/// companions in a folder of another shape (`transcripts/`) apart, not
/// across everything between them.
fn range_groups(keys: &[&str]) -> Vec<Vec<usize>> {
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        let folder = key.rfind('/').map_or("", |end| &key[..=end]);
        let shape: String = folder
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        groups.entry(shape).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.sort();
    groups
}

/// The folder (up to and including its last `/`) all of `keys` lie in.
fn common_folder<'k>(keys: &[&'k str]) -> &'k str {
    let (Some(min), Some(max)) = (keys.iter().min(), keys.iter().max()) else {
        return "";
    };
    let common = min
        .bytes()
        .zip(max.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    match min[..common].rfind('/') {
        Some(i) => &min[..=i],
        None => "",
    }
}

/// A key that sorts just before `key` in any of the stores' orders: `key`
/// less its last character (a prefix sorts before what extends it).
fn just_before(key: &str) -> Option<&str> {
    let (last, _) = key.char_indices().next_back()?;
    (last > 0).then(|| &key[..last])
}

impl Store {
    /// The store, verifying absence as `verification` says (a store made
    /// with [`Store::from_object_store`] verifies with a `head`).
    pub fn with_verification(mut self, verification: Verification) -> Self {
        self.verification = verification;
        self
    }

    /// How this store verifies absence.
    pub fn verification(&self) -> Verification {
        self.verification
    }

    /// Whether each of `keys` is present (`Ok(true)`), gone (`Ok(false)`)
    /// or could not be checked, and how that was found; in the order of
    /// `keys`.
    pub async fn presence(&self, keys: &[String], concurrency: usize) -> Vec<Presence> {
        self.lookup_checked(keys, concurrency)
            .await
            .into_iter()
            .map(|(r, how)| (r.map(|m| m.is_some()), how))
            .collect()
    }

    /// Each of `keys`' metadata, `None` where it does not exist, as this
    /// store verifies (one listing of their range, a `head` for each key it
    /// could not decide; or a `head` each), with how each answer was found.
    /// In the order of `keys`.
    async fn lookup_checked(
        &self,
        keys: &[String],
        concurrency: usize,
    ) -> Vec<(
        std::result::Result<Option<ObjectMeta>, String>,
        Verification,
    )> {
        let headed = |answers: Vec<_>| {
            answers
                .into_iter()
                .map(|a| (a, Verification::Head))
                .collect::<Vec<_>>()
        };
        if keys.is_empty() {
            return Vec::new();
        }
        if self.verification == Verification::Head {
            return headed(self.head_lookup(keys, concurrency).await);
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut decided = vec![None; keys.len()];
        for group in range_groups(&refs) {
            let members: Vec<&str> = group.iter().map(|&i| refs[i]).collect();
            for (i, answer) in group.into_iter().zip(self.listed_lookup(&members).await) {
                decided[i] = answer;
            }
        }
        let rest: Vec<String> = keys
            .iter()
            .zip(&decided)
            .filter(|(_, d)| d.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        let mut heads = self.head_lookup(&rest, concurrency).await.into_iter();
        decided
            .into_iter()
            .map(|d| match d {
                Some(answer) => (answer, Verification::Listing),
                None => (
                    heads
                        .next()
                        .unwrap_or_else(|| Err("no answer for this key".into())),
                    Verification::Head,
                ),
            })
            .collect()
    }

    /// Whether each of `keys` is present, by a `head` of each, whatever
    /// this store's verification.
    pub async fn head_presence(&self, keys: &[String], concurrency: usize) -> Vec<Presence> {
        self.head_lookup(keys, concurrency)
            .await
            .into_iter()
            .map(|r| (r.map(|m| m.is_some()), Verification::Head))
            .collect()
    }

    async fn head_lookup(
        &self,
        keys: &[String],
        concurrency: usize,
    ) -> Vec<std::result::Result<Option<ObjectMeta>, String>> {
        self.head_many(keys, concurrency)
            .await
            .into_iter()
            .map(|h| h.map_err(|e| e.to_string()))
            .collect()
    }

    /// What one listing of the keys' range says of each; `None` for a key
    /// it could not decide (to be checked with a `head`).
    async fn listed_lookup(
        &self,
        refs: &[&str],
    ) -> Vec<Option<std::result::Result<Option<ObjectMeta>, String>>> {
        let order = self.order;
        let sorted = order.is_sorted();
        let folder = common_folder(refs);
        let first = refs
            .iter()
            .copied()
            .min_by(|a, b| order.cmp(a, b))
            .unwrap_or_default();
        let last = refs
            .iter()
            .copied()
            .max_by(|a, b| order.cmp(a, b))
            .unwrap_or_default();
        let start_after = sorted.then(|| just_before(first)).flatten();
        let Some(mut listing) = self.entries.range(folder, start_after) else {
            return vec![None; refs.len()];
        };
        let wanted: HashSet<&str> = refs.iter().copied().collect();
        let mut seen: HashMap<String, ObjectMeta> = HashMap::new();
        let cap = RANGE_SLACK * refs.len() + RANGE_BASE;
        let mut listed = 0usize;
        // The last key listed, while the listing keeps the store's order.
        let mut reached: Option<String> = None;
        let mut in_order = true;
        let mut complete = false;
        let mut failure: Option<String> = None;
        loop {
            match listing.next().await {
                None => {
                    complete = true;
                    break;
                }
                Some(Err(e)) => {
                    failure = Some(e.to_string());
                    break;
                }
                Some(Ok(Listed::Object(meta))) => {
                    let key = meta.location.as_ref();
                    if sorted {
                        if let Some(previous) = &reached {
                            in_order &= order.cmp(previous, key) == std::cmp::Ordering::Less;
                        }
                        if in_order && order.cmp(key, last) == std::cmp::Ordering::Greater {
                            complete = true;
                            break;
                        }
                    }
                    reached = Some(key.to_string());
                    if wanted.contains(key) {
                        seen.insert(key.to_string(), meta);
                    }
                    listed += 1;
                    if listed > cap {
                        break;
                    }
                }
                Some(Ok(_)) => {}
            }
        }
        tracing::debug!(
            store = %self.name,
            keys = refs.len(),
            listed,
            complete,
            in_order,
            failed = failure.is_some(),
            "keys checked by listing"
        );
        refs.iter()
            .map(|key| {
                if let Some(meta) = seen.get(*key) {
                    return Some(Ok(Some(meta.clone())));
                }
                if !in_order {
                    return None;
                }
                let passed = complete
                    || (sorted
                        && reached
                            .as_deref()
                            .is_some_and(|r| order.cmp(key, r) != std::cmp::Ordering::Greater));
                match (&failure, passed) {
                    (_, true) => Some(Ok(None)),
                    (Some(e), false) => Some(Err(format!(
                        "the listing that checks these keys failed: {e}"
                    ))),
                    (None, false) => None,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_listed_apart_by_the_shape_of_their_folder() {
        let keys = [
            "calls/q/2024/01/a.json",
            "transcripts/a.txt",
            "calls/q/2024/01/b.json",
            "transcripts/b.txt",
            "calls/t/2024/01/c.json",
        ];
        assert_eq!(range_groups(&keys), vec![vec![0, 2], vec![1, 3], vec![4]]);
        let dated = [
            "c/2024/05/01/a.wav",
            "c/2024/06/12/b.wav",
            "c/2025/01/01/c.wav",
        ];
        assert_eq!(range_groups(&dated), vec![vec![0, 1, 2]]);
        let one_folder = ["t/a.txt", "t/b.txt", "t/sub/c.txt"];
        assert_eq!(range_groups(&one_folder), vec![vec![0, 1], vec![2]]);
        assert_eq!(range_groups(&["x"]), vec![vec![0]]);
    }

    #[test]
    fn the_range_starts_just_before_the_first_key_in_the_common_folder() {
        assert_eq!(common_folder(&["a/b/c.wav", "a/b/d/e.wav"]), "a/b/");
        assert_eq!(common_folder(&["a/b/c.wav", "a/bc/d.wav"]), "a/");
        assert_eq!(common_folder(&["x.wav", "a/b.wav"]), "");
        assert_eq!(common_folder(&["a/b/c.wav"]), "a/b/");
        assert_eq!(just_before("a/b/c.wav"), Some("a/b/c.wa"));
        assert_eq!(just_before("a/z😀"), Some("a/z"));
        assert_eq!(just_before("x"), None);
        assert_eq!(just_before(""), None);
    }
}
