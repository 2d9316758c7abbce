//! Listing a cloud store page by page, past keys object_store cannot
//! represent.
//!
//! S3, Azure and GCS accept keys that object_store's `Path` refuses: an
//! empty segment (`calls//x.wav`, one uploader's double slash), a `.` or
//! `..` segment, a control character. object_store parses a whole listing
//! page at once, so one such key fails its page, and its `list` stream ends
//! there: the store's other recordings would never be planned. This lister
//! asks for the pages itself. When a page fails on a key, it lists again
//! from the last key it handed over, in ever smaller pages, until the page
//! of that one key fails: the key is reported (kept, never deleted), and the
//! listing goes on after it (`start-after`; Azure's inclusive `startFrom`
//! is made exclusive by object_store). Each key costs about twenty small
//! requests; every other page is a normal one of 1,000 keys. The search is
//! bounded: a store whose failing page cannot be narrowed to one key fails
//! as a listing error, as before.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::ObjectMeta;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::{Error as PathError, Path};

use super::{Entries, Listed, ProblemKind};

/// Keys per normal page (the most S3, Azure and GCS return at once).
const PAGE: usize = 1000;
/// Requests spent narrowing one failing page before giving up on the store.
const NARROWING_REQUESTS: u32 = 64;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A store's listing through its paginated list API.
pub(crate) struct Paged {
    source: Arc<dyn PaginatedListStore>,
    /// The URL's path with a trailing `/`, or `None` for the whole bucket.
    prefix: Option<String>,
}

impl std::fmt::Debug for Paged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paged")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Paged {
    pub(crate) fn new(source: Arc<dyn PaginatedListStore>, prefix: &Path) -> Self {
        let prefix = (!prefix.as_ref().is_empty()).then(|| format!("{}/", prefix.as_ref()));
        Self { source, prefix }
    }
}

/// Where the listing stands.
struct Cursor {
    /// The last key handed over (or reported): a failing page is listed
    /// again from here.
    after: Option<String>,
    /// The next page's token, while pages come normally.
    token: Option<String>,
    /// Keys per request: `PAGE`, or less while narrowing a failing page.
    size: usize,
    /// Requests spent on the failing page being narrowed.
    narrowing: u32,
    /// The last key reported: reported again, the store ignored the offset.
    reported: Option<String>,
    done: bool,
}

impl Cursor {
    fn options(&self) -> PaginatedListOptions {
        PaginatedListOptions {
            offset: self.token.is_none().then(|| self.after.clone()).flatten(),
            page_token: self.token.clone(),
            max_keys: (self.size < PAGE).then_some(self.size),
            ..Default::default()
        }
    }
}

/// The raw key a page failed on, if it failed because object_store cannot
/// represent a key.
fn unrepresentable(error: &object_store::Error) -> Option<(&str, String)> {
    let object_store::Error::InvalidPath { source } = error else {
        return None;
    };
    match source {
        PathError::EmptySegment { path } => Some((path, "an empty segment (`//`)".into())),
        PathError::BadSegment { path, source } => Some((path, source.to_string())),
        _ => None,
    }
}

/// Why a page shows that the store ignores what narrowing relies on (a
/// smaller page, a key to start after), if it does: lethe then cannot list
/// past a key it cannot represent.
fn ignores_narrowing(
    cursor: &Cursor,
    offset: Option<&str>,
    objects: &[ObjectMeta],
) -> Option<String> {
    let narrowing = cursor.size < PAGE;
    if narrowing && objects.len() > cursor.size {
        return Some(format!(
            "the store returned {} keys when lethe asked for {}, so lethe cannot list past a key it cannot represent (nothing in this store is deleted)",
            objects.len(),
            cursor.size
        ));
    }
    let first = objects.first()?.location.as_ref();
    match offset {
        Some(offset) if first <= offset => Some(format!(
            "the store listed {first} when lethe asked to start after {offset}, so lethe cannot list past a key it cannot represent (nothing in this store is deleted)"
        )),
        _ => None,
    }
}

impl Paged {
    /// The key relative to the store's prefix.
    fn relative<'k>(&self, key: &'k str) -> &'k str {
        match &self.prefix {
            Some(p) => key.strip_prefix(p.as_str()).unwrap_or(key),
            None => key,
        }
    }

    /// One request, and what it yields.
    async fn step(&self, cursor: &mut Cursor) -> Vec<Result<Listed, BoxError>> {
        let page = self
            .source
            .list_paginated(self.prefix.as_deref(), cursor.options())
            .await;
        let offset = cursor.options().offset;
        match page {
            Ok(page) => {
                let objects = page.result.objects;
                if let Some(ignored) = ignores_narrowing(cursor, offset.as_deref(), &objects) {
                    cursor.done = true;
                    return vec![Err(ignored.into())];
                }
                if let Some(last) = objects.last() {
                    cursor.after = Some(last.location.to_string());
                }
                cursor.token = page.page_token.filter(|t| !t.is_empty());
                cursor.done = cursor.token.is_none();
                // A narrowed page came through: the failing key lies beyond
                // it. (An empty one is Azure's: `startFrom` is inclusive and
                // object_store drops the key it names, so go on as asked.)
                if !objects.is_empty() {
                    cursor.size = (cursor.size * 2).min(PAGE);
                }
                objects
                    .into_iter()
                    .map(|meta| Ok(self.object(meta)))
                    .collect()
            }
            Err(e) => match unrepresentable(&e) {
                Some(_) if cursor.narrowing >= NARROWING_REQUESTS => {
                    cursor.done = true;
                    vec![Err(e.into())]
                }
                Some((key, _)) if cursor.reported.as_deref() == Some(key) => {
                    cursor.done = true;
                    vec![Err(format!(
                        "{e}: the store lists it again when asked to start after it, so lethe cannot list past a key it cannot represent (nothing in this store is deleted); rename the object"
                    )
                    .into())]
                }
                Some((key, why)) if cursor.size == 1 => {
                    // The page of exactly this key failed: report it, go on after it.
                    let item = Listed::Problem {
                        name: self.relative(key).escape_debug().to_string(),
                        reason: format!(
                            "the store lists this key, but it cannot be addressed exactly ({why}): kept, never deleted; rename the object to a key without it"
                        ),
                        kind: ProblemKind::Unrepresentable,
                    };
                    cursor.after = Some(key.to_string());
                    cursor.reported = Some(key.to_string());
                    cursor.token = None;
                    cursor.size = PAGE;
                    cursor.narrowing = 0;
                    vec![Ok(item)]
                }
                Some(_) => {
                    // List again from the last key handed over, in half the page.
                    cursor.token = None;
                    cursor.size = (cursor.size / 2).max(1);
                    cursor.narrowing += 1;
                    vec![]
                }
                None => {
                    cursor.done = true;
                    vec![Err(e.into())]
                }
            },
        }
    }

    fn object(&self, mut meta: ObjectMeta) -> Listed {
        if let Some(prefix) = &self.prefix {
            let key = meta.location.as_ref();
            match key.strip_prefix(prefix.as_str()).map(Path::parse) {
                Some(Ok(relative)) => meta.location = relative,
                _ => {
                    return Listed::Problem {
                        name: key.escape_debug().to_string(),
                        reason: format!("listed under the prefix {prefix} but outside it"),
                        kind: ProblemKind::Unrepresentable,
                    };
                }
            }
        }
        Listed::Object(meta)
    }
}

impl Entries for Paged {
    fn entries(&self) -> BoxStream<'static, Result<Listed, BoxError>> {
        let this = Paged {
            source: self.source.clone(),
            prefix: self.prefix.clone(),
        };
        let cursor = Cursor {
            after: None,
            token: None,
            size: PAGE,
            narrowing: 0,
            reported: None,
            done: false,
        };
        futures::stream::unfold((this, cursor), |(this, mut cursor)| async move {
            if cursor.done {
                return None;
            }
            let items = this.step(&mut cursor).await;
            Some((futures::stream::iter(items), (this, cursor)))
        })
        .flatten()
        .boxed()
    }

    fn protect(&self, _paths: &[std::path::PathBuf]) {}
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use object_store::ListResult;
    use object_store::list::PaginatedListResult;

    use super::*;

    /// A bucket of raw keys that pages like S3 (`start-after`, `max-keys`,
    /// a token) and parses each page as object_store does.
    struct Raw {
        keys: Vec<&'static str>,
        honours_offset: bool,
        requests: AtomicU32,
    }

    #[async_trait]
    impl PaginatedListStore for Raw {
        async fn list_paginated(
            &self,
            _prefix: Option<&str>,
            opts: PaginatedListOptions,
        ) -> object_store::Result<PaginatedListResult> {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let start = match (&opts.page_token, &opts.offset) {
                (Some(t), _) => t.parse().unwrap(),
                (None, Some(o)) if self.honours_offset => {
                    self.keys.iter().take_while(|k| **k <= o.as_str()).count()
                }
                _ => 0,
            };
            let end = (start + opts.max_keys.unwrap_or(PAGE)).min(self.keys.len());
            let objects = self.keys[start..end]
                .iter()
                .map(|k| {
                    Ok(ObjectMeta {
                        location: Path::parse(k)?,
                        last_modified: chrono::DateTime::UNIX_EPOCH,
                        size: 1,
                        e_tag: None,
                        version: None,
                    })
                })
                .collect::<object_store::Result<Vec<_>>>()?;
            Ok(PaginatedListResult {
                result: ListResult {
                    common_prefixes: vec![],
                    objects,
                    extensions: Default::default(),
                },
                page_token: (end < self.keys.len()).then(|| end.to_string()),
            })
        }
    }

    async fn listing(raw: Raw) -> (Vec<String>, u32) {
        let raw = Arc::new(raw);
        let paged = Paged::new(raw.clone(), &Path::default());
        let items: Vec<String> = paged
            .entries()
            .map(|item| match item {
                Ok(Listed::Object(m)) => m.location.to_string(),
                Ok(Listed::Problem { name, kind, .. }) => format!("{}:{name}", kind.code()),
                Ok(Listed::Unordered { .. }) => "unordered".into(),
                Err(e) => format!("error:{e}"),
            })
            .collect()
            .await;
        (items, raw.requests.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn lists_past_each_key_it_cannot_represent_and_keeps_every_other() {
        let mut keys: Vec<&'static str> = vec!["a//x", "b", "c/./d", "e", "f\u{1}", "g"];
        let filler: Vec<&'static str> = (0..2500)
            .map(|i| &*Box::leak(format!("h{i:05}").into_boxed_str()))
            .collect();
        keys.extend(filler.iter().copied());
        keys.push("i/../j");
        keys.push("k");
        keys.sort();
        let (items, requests) = listing(Raw {
            keys: keys.clone(),
            honours_offset: true,
            requests: AtomicU32::new(0),
        })
        .await;
        let expected: Vec<String> = keys
            .iter()
            .map(|k| match Path::parse(k) {
                Ok(_) => k.to_string(),
                Err(_) => format!("unrepresentable-key:{}", k.escape_debug()),
            })
            .collect();
        assert_eq!(items, expected);
        // Three normal pages, and a bounded search per odd key.
        assert!(requests < 3 + 4 * 2 * 12, "{requests} requests");
    }

    #[tokio::test]
    async fn a_store_that_ignores_the_offset_fails_instead_of_listing_forever() {
        let (items, requests) = listing(Raw {
            keys: vec!["a", "b//c", "d"],
            honours_offset: false,
            requests: AtomicU32::new(0),
        })
        .await;
        let last = items.last().unwrap();
        assert!(
            last.starts_with("error:") && last.contains("cannot list past"),
            "{items:?}"
        );
        assert!(requests < 100, "{requests} requests");
    }
}
