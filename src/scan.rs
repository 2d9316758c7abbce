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
use crate::store::{Listed, Store, StoreError};

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
    Problem { name: String, reason: String },
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
    Present { meta: ObjectMeta, bytes: Bytes },
    Unreadable(String),
}

/// Streams `store` through the policy's patterns. Sidecar reads run up to
/// `concurrency` at a time; the output keeps the listing's order.
pub fn scan<'a>(
    store: &'a Store,
    policy: &'a Policy,
    concurrency: usize,
) -> impl Stream<Item = Result<Scanned<'a>, StoreError>> + 'a {
    store
        .list()
        .map(move |listed| async move {
            let meta = match listed? {
                Listed::Object(meta) => meta,
                Listed::Problem { name, reason } => return Ok(Scanned::Problem { name, reason }),
            };
            let key = meta.location.as_ref();
            let matches = policy.matches(store.name(), key);
            if matches.is_empty() {
                return Ok(if policy.is_owned(store.name(), key) {
                    Scanned::Owned(meta)
                } else {
                    Scanned::Unmatched(meta)
                });
            }
            let mut sidecars = Vec::new();
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
                if sidecar_key == key || sidecars.iter().any(|s: &SidecarRead| s.key == sidecar_key)
                {
                    continue;
                }
                let state = match store.get_small(&sidecar_key, SIDECAR_LIMIT).await {
                    Ok(None) => SidecarState::Absent,
                    Ok(Some((meta, bytes))) => SidecarState::Present { meta, bytes },
                    Err(e) => SidecarState::Unreadable(e.to_string()),
                };
                sidecars.push(SidecarRead {
                    key: sidecar_key,
                    state,
                });
            }
            Ok(Scanned::Candidate(Candidate {
                object: meta,
                matches,
                sidecars,
            }))
        })
        .buffered(concurrency.max(1))
}
