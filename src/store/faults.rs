//! A fault-injecting `ObjectStore`: wraps a real client and, driven by a
//! seed, fails some of its requests the way cloud stores fail: transient
//! errors, throttling, timeouts, slow answers, answers lost after the request
//! was carried out, bulk deletes in which single keys fail, listings out of
//! order, and range listings that leave out a present key (`hide`).
//!
//! It exists for the fault suite (`tests/it/faults.rs`), which turns it on
//! with `[stores.inject_faults]` and checks that no fault ever leads to a
//! wrongful deletion or to a certificate naming an object that still exists.
//! Every injected fault is logged (`injected fault`), so a run's log says how
//! many it met.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::config::FaultSettings;

/// What one request meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Error,
    Throttle,
    Timeout,
    LostReply,
    Slow,
}

impl Fault {
    fn as_str(self) -> &'static str {
        match self {
            Fault::Error => "error",
            Fault::Throttle => "throttle",
            Fault::Timeout => "timeout",
            Fault::LostReply => "lost_reply",
            Fault::Slow => "slow",
        }
    }
}

/// With `reorder`, the pages shuffled together (memory: this many pages).
pub const REORDERED_PAGES: usize = 4;

/// With `hide`, how many keys a process remembers having hidden (so that it
/// hides each at most once); once full, nothing more is hidden.
pub const HIDDEN_KEYS: usize = 1 << 16;

/// The keys hidden so far in this process, by store and key.
static HIDDEN: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// Whether `key` of `store` may be hidden now: it never was, and the set of
/// hidden keys has room to remember it (then it is remembered).
fn hide_once(store: &str, key: &str) -> bool {
    let Ok(mut hidden) = HIDDEN.lock() else {
        return false;
    };
    hidden.len() < HIDDEN_KEYS && hidden.insert(format!("{store}\0{key}"))
}

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    settings: FaultSettings,
    draws: AtomicU64,
    /// In front of a local folder: faults are a disk's (EIO, ENOSPC).
    local: bool,
}

/// SplitMix64: the n-th draw of a seed, uniform in [0, 1).
fn draw(seed: u64, n: u64) -> f64 {
    let mut z = seed
        .wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn injected(local: bool, fault: &str, op: &str, what: &str) -> object_store::Error {
    tracing::warn!(fault, op, key = what, "injected fault");
    if local {
        // A local folder fails as a disk does: an I/O error, a full disk.
        let (errno, meaning) = match fault {
            "throttle" => (libc::ENOSPC, "no space left on device"),
            "lost_reply" | "partial_lost_reply" => {
                (libc::EIO, "I/O error after the change was made")
            }
            _ => (libc::EIO, "I/O error"),
        };
        let io = std::io::Error::from_raw_os_error(errno);
        return object_store::Error::Generic {
            store: "FaultInjection",
            source: format!("{op} {what}: injected {meaning} ({io})").into(),
        };
    }
    let message = match fault {
        "error" => "injected transient error (HTTP 500 InternalError)".to_string(),
        "throttle" => "injected throttling (HTTP 503 SlowDown)".to_string(),
        "timeout" => "injected timeout: no answer in time".to_string(),
        "lost_reply" => "injected lost reply: the request was carried out".to_string(),
        other => format!("injected {other}"),
    };
    object_store::Error::Generic {
        store: "FaultInjection",
        source: format!("{op} {what}: {message}").into(),
    }
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, settings: FaultSettings) -> Self {
        Self {
            inner,
            settings,
            draws: AtomicU64::new(0),
            local: false,
        }
    }

    /// In front of a local folder: its errors are a disk's, EIO on a read,
    /// a delete or a check, ENOSPC for a full disk.
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    fn next(&self) -> f64 {
        draw(
            self.settings.seed,
            self.draws.fetch_add(1, Ordering::Relaxed),
        )
    }

    fn request_fault(&self) -> Option<Fault> {
        let s = &self.settings;
        let mut u = self.next();
        for (p, fault) in [
            (s.error, Fault::Error),
            (s.throttle, Fault::Throttle),
            (s.timeout, Fault::Timeout),
            (s.lost_reply, Fault::LostReply),
            (s.slow, Fault::Slow),
        ] {
            if u < p {
                return Some(fault);
            }
            u -= p;
        }
        None
    }

    /// Runs one request through the faults: `op` is carried out unless the
    /// fault says it is not.
    async fn request<T, F>(&self, op: &str, what: &str, f: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let local = self.local;
        match self.request_fault() {
            None => f.await,
            Some(fault @ (Fault::Error | Fault::Throttle)) => {
                Err(injected(local, fault.as_str(), op, what))
            }
            Some(Fault::Timeout) => {
                tokio::time::sleep(self.settings.delay).await;
                Err(injected(local, "timeout", op, what))
            }
            Some(Fault::LostReply) => {
                let _ = f.await;
                Err(injected(local, "lost_reply", op, what))
            }
            Some(Fault::Slow) => {
                tracing::warn!(fault = "slow", op, key = what, "injected fault");
                tokio::time::sleep(self.settings.delay).await;
                f.await
            }
        }
    }

    /// `listing` as a faulty store lists: it may fail at its start or part
    /// way through, and its pages may come out of order: with `reorder`,
    /// pages of that many entries, each in the store's order, every
    /// [`REORDERED_PAGES`] of them listed in an order drawn from the seed.
    fn faulted(
        &self,
        listing: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let settings = self.settings;
        let local = self.local;
        let at_start = self.request_fault();
        let base = self.draws.fetch_add(1 << 32, Ordering::Relaxed);
        if let Some(fault @ (Fault::Error | Fault::Throttle | Fault::Timeout)) = at_start {
            return futures::stream::iter(vec![Err(injected(
                local,
                fault.as_str(),
                "list",
                "start",
            ))])
            .boxed();
        }
        // Mid-listing, a page fails with the request error chance, roughly
        // once per thousand entries at the configured rate.
        let mid = (settings.error + settings.throttle) / 1000.0;
        let mut n = 0u64;
        let mut failed = false;
        let listing = listing
            .filter_map(move |item| {
                n += 1;
                let out = if failed {
                    None
                } else if draw(settings.seed, base + n) < mid {
                    failed = true;
                    Some(Err(injected(
                        local,
                        "error",
                        "list",
                        &format!("after {n} entries"),
                    )))
                } else {
                    Some(item)
                };
                futures::future::ready(out)
            })
            .boxed();
        if settings.reorder == 0 {
            return listing;
        }
        let shuffles = self.draws.fetch_add(1 << 32, Ordering::Relaxed);
        let page = settings.reorder;
        let mut drawn = 0u64;
        listing
            .chunks(page * REORDERED_PAGES)
            .map(move |window| {
                let mut pages: Vec<Vec<Result<ObjectMeta>>> = Vec::new();
                let mut window = window.into_iter().peekable();
                while window.peek().is_some() {
                    pages.push(window.by_ref().take(page).collect());
                }
                // Fisher-Yates over the pages, driven by the seed.
                for i in (1..pages.len()).rev() {
                    drawn += 1;
                    let j = (draw(settings.seed, shuffles + drawn) * (i + 1) as f64) as usize;
                    pages.swap(i, j.min(i));
                }
                tracing::warn!(
                    fault = "reorder",
                    op = "list",
                    pages = pages.len(),
                    "injected fault"
                );
                futures::stream::iter(pages.into_iter().flatten())
            })
            .flatten()
            .boxed()
    }

    /// `listing`, leaving out with `hide`'s chance per entry one present key
    /// (at most one per listing), each key at most once per process.
    fn hiding(
        &self,
        listing: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let settings = self.settings;
        if settings.hide <= 0.0 {
            return listing;
        }
        let base = self.draws.fetch_add(1 << 32, Ordering::Relaxed);
        let store = self.inner.to_string();
        let mut n = 0u64;
        let mut hid = false;
        listing
            .filter(move |item| {
                n += 1;
                let keep = match item {
                    Ok(meta) if !hid && draw(settings.seed, base + n) < settings.hide => {
                        let key = meta.location.as_ref();
                        if hide_once(&store, key) {
                            hid = true;
                            tracing::warn!(fault = "hide", op = "list", key, "injected fault");
                        }
                        !hid
                    }
                    _ => true,
                };
                futures::future::ready(keep)
            })
            .boxed()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.request(
            "put",
            location.as_ref(),
            self.inner.put_opts(location, payload, opts),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { "head" } else { "get" };
        self.request(
            op,
            location.as_ref(),
            self.inner.get_opts(location, options),
        )
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.request(
            "get",
            location.as_ref(),
            self.inner.get_ranges(location, ranges),
        )
        .await
    }

    /// The bulk request may fail as a whole (nothing said about single keys),
    /// and single keys may fail alone, before or after being deleted.
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let local = self.local;
        let request = self.request_fault();
        let settings = self.settings;
        let base = self.draws.fetch_add(1 << 32, Ordering::Relaxed);
        futures::stream::once(async move {
            let paths: Vec<Result<Path>> = locations.collect().await;
            let what = format!("{} keys", paths.len());
            match request {
                Some(fault @ (Fault::Error | Fault::Throttle | Fault::Timeout)) => {
                    if fault == Fault::Timeout {
                        tokio::time::sleep(settings.delay).await;
                    }
                    return futures::stream::iter(vec![Err(injected(
                        local,
                        fault.as_str(),
                        "delete",
                        &what,
                    ))])
                    .boxed();
                }
                Some(Fault::LostReply) => {
                    let _: Vec<_> = inner
                        .delete_stream(futures::stream::iter(paths).boxed())
                        .collect()
                        .await;
                    return futures::stream::iter(vec![Err(injected(
                        local,
                        "lost_reply",
                        "delete",
                        &what,
                    ))])
                    .boxed();
                }
                Some(Fault::Slow) => {
                    tracing::warn!(fault = "slow", op = "delete", key = what, "injected fault");
                    tokio::time::sleep(settings.delay).await;
                }
                None => {}
            }
            let mut pass = Vec::new();
            let mut after = Vec::new();
            let mut errors = Vec::new();
            for (i, p) in paths.into_iter().enumerate() {
                let Ok(path) = p else {
                    pass.push(p);
                    continue;
                };
                let u = draw(settings.seed, base + i as u64);
                if u < settings.partial / 2.0 {
                    errors.push(Err(injected(local, "partial", "delete", path.as_ref())));
                } else if u < settings.partial {
                    errors.push(Err(injected(
                        local,
                        "partial_lost_reply",
                        "delete",
                        path.as_ref(),
                    )));
                    after.push(Ok(path));
                } else {
                    pass.push(Ok(path));
                }
            }
            if !after.is_empty() {
                let _: Vec<_> = inner
                    .delete_stream(futures::stream::iter(after).boxed())
                    .collect()
                    .await;
            }
            futures::stream::iter(errors)
                .chain(inner.delete_stream(futures::stream::iter(pass).boxed()))
                .boxed()
        })
        .flatten()
        .boxed()
    }

    /// A listing may fail at its start or part way through, and its pages
    /// may come out of order: see [`FaultyStore::faulted`].
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.faulted(self.inner.list(prefix))
    }

    /// A range listing (what absence checks ask for) meets the faults of
    /// any listing and, with `hide`, may leave out one present key.
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let listing = self.faulted(self.inner.list_with_offset(prefix, offset));
        self.hiding(listing)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.request(
            "list",
            prefix.map(|p| p.as_ref()).unwrap_or(""),
            self.inner.list_with_delimiter(prefix),
        )
        .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.request(
            "copy",
            from.as_ref(),
            self.inner.copy_opts(from, to, options),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn settings(seed: u64) -> FaultSettings {
        FaultSettings {
            seed,
            error: 0.1,
            throttle: 0.1,
            timeout: 0.05,
            lost_reply: 0.1,
            slow: 0.05,
            partial: 0.3,
            delay: std::time::Duration::from_millis(1),
            reorder: 0,
            hide: 0.0,
        }
    }

    async fn listed(faulty: &FaultyStore, offset: &str) -> Vec<String> {
        faulty
            .list_with_offset(Some(&Path::from("hide")), &Path::from(offset))
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_range_listing_hides_one_present_key_at_a_time_and_each_only_once() {
        let mem = Arc::new(InMemory::new());
        let keys: Vec<String> = (0..5).map(|i| format!("hide/k{i}")).collect();
        for k in &keys {
            mem.put(&Path::from(k.as_str()), PutPayload::from("x"))
                .await
                .unwrap();
        }
        let faulty = FaultyStore::new(
            mem.clone(),
            FaultSettings {
                seed: 3,
                hide: 1.0,
                ..Default::default()
            },
        );
        // The whole listing is never hidden from: the scan sees every key.
        let all: Vec<String> = faulty
            .list(Some(&Path::from("hide")))
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        assert_eq!(all, keys);
        let mut hidden = Vec::new();
        for _ in 0..keys.len() {
            let got = listed(&faulty, "hide/k").await;
            assert_eq!(got.len(), keys.len() - 1, "one key left out: {got:?}");
            let missing: Vec<&String> = keys.iter().filter(|k| !got.contains(k)).collect();
            assert!(!hidden.contains(missing[0]), "{} hidden twice", missing[0]);
            hidden.push(missing[0].clone());
        }
        // Every key was hidden once; none is hidden again, by this store or
        // another over the same objects.
        assert_eq!(listed(&faulty, "hide/k").await, keys);
        let again = FaultyStore::new(mem, faulty.settings);
        assert_eq!(listed(&again, "hide/k").await, keys);
    }

    #[test]
    fn draws_are_uniform_and_repeatable() {
        let v: Vec<f64> = (0..10_000).map(|n| draw(7, n)).collect();
        assert!(v.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert_eq!(draw(7, 3), draw(7, 3));
        assert_ne!(draw(7, 3), draw(8, 3));
    }

    #[tokio::test]
    async fn faults_fail_requests_and_say_which_keys_were_really_deleted() {
        let mem = Arc::new(InMemory::new());
        for i in 0..200 {
            mem.put(&Path::from(format!("k{i:03}")), PutPayload::from("x"))
                .await
                .unwrap();
        }
        // Keys fail alone (no request-level fault here: that is the head's part).
        let partial_only = FaultSettings {
            seed: 42,
            partial: 0.3,
            ..Default::default()
        };
        let faulty = FaultyStore::new(mem.clone(), partial_only);
        let keys: Vec<Result<Path>> = (0..200)
            .map(|i| Ok(Path::from(format!("k{i:03}"))))
            .collect();
        let answers: Vec<Result<Path>> = faulty
            .delete_stream(futures::stream::iter(keys).boxed())
            .collect()
            .await;
        let confirmed: Vec<String> = answers
            .iter()
            .filter_map(|a| a.as_ref().ok().map(|p| p.to_string()))
            .collect();
        let errors = answers.iter().filter(|a| a.is_err()).count();
        assert!(errors > 0, "a 30% partial rate fails some keys");
        // A confirmed delete is always real; some failures were deleted anyway.
        for k in &confirmed {
            assert!(mem.head(&Path::from(k.as_str())).await.is_err(), "{k}");
        }
        let remaining = mem.list(None).count().await;
        assert!(
            remaining < 200 - confirmed.len(),
            "lost replies deleted some unconfirmed keys"
        );
        // Heads fail now and then, but a successful head is the truth.
        let faulty = FaultyStore::new(mem.clone(), settings(42));
        let mut failed = 0;
        for i in 0..200 {
            if let Err(object_store::Error::Generic { .. }) =
                faulty.head(&Path::from(format!("k{i:03}"))).await
            {
                failed += 1;
            }
        }
        assert!(failed > 0 && failed < 200, "{failed}");
    }
}
