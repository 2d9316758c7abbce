//! The executor through the library API, with a store that refuses some
//! deletions: failures are reported per object and the rest completes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use futures::stream::BoxStream;
use lethe::config::DatabaseUrl;
use lethe::decide::Action;
use lethe::execute::{self, Options, Status};
use lethe::ledger::Ledger;
use lethe::policy::Policy;
use lethe::store::Store;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::*;

/// Refuses to delete any key containing `needle`; sets `trip` (when given) on
/// the first deletion, the way a SIGTERM arriving mid-batch would.
#[derive(Debug)]
struct RefusingStore {
    inner: Arc<LocalFileSystem>,
    needle: &'static str,
    trip: Option<Arc<AtomicBool>>,
}

impl fmt::Display for RefusingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefusingStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for RefusingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = self.inner.clone();
        let needle = self.needle;
        let trip = self.trip.clone();
        locations
            .then(move |location| {
                let inner = inner.clone();
                let trip = trip.clone();
                async move {
                    let location = location?;
                    if let Some(trip) = trip {
                        trip.store(true, Ordering::SeqCst);
                    }
                    if location.as_ref().contains(needle) {
                        return Err(object_store::Error::Generic {
                            store: "refusing",
                            source: "access denied (injected)".into(),
                        });
                    }
                    inner
                        .delete_stream(futures::stream::once(async move { Ok(location) }).boxed())
                        .next()
                        .await
                        .expect("one result")
                }
            })
            .boxed()
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_refused_deletion_is_recorded_as_failed_and_the_others_complete() {
    let w = World::new();
    let old = months_ago(30);
    for id in ["A", "B", "FAIL-C", "D"] {
        w.put(&format!("calls/quality/{old}/{id}.wav"), "audio");
        w.put(&format!("transcripts/{id}.txt"), "text");
    }
    let inner = Arc::new(LocalFileSystem::new_with_prefix(w.store()).unwrap());
    let store = Store::from_object_store(
        "recordings",
        "file:///test",
        Arc::new(RefusingStore {
            inner,
            needle: "FAIL",
            trip: None,
        }),
    );
    let policy = Policy::from_sources(vec![(
        "p.yaml".into(),
        "p.yaml".into(),
        POLICY.as_bytes().to_vec(),
    )])
    .unwrap();
    let now = chrono::Utc::now();
    let items = crate::plan_items(&store, &policy, &lethe::decide::Orders::default(), now).await;
    assert_eq!(
        items.iter().filter(|i| i.action == Action::Delete).count(),
        4
    );

    let ledger = Ledger::open(&DatabaseUrl::new(format!(
        "sqlite://{}?mode=rwc",
        w.path("exec.db").display()
    )))
    .await
    .unwrap();
    let report = execute::execute(
        &store,
        futures::stream::iter(items),
        &ledger.journal("run-1"),
        Options {
            batch: 2,
            concurrency: 4,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(report.recordings_deleted, 3);
    assert_eq!(report.objects_deleted, 6);
    assert_eq!(report.failed, 1);
    assert_eq!(
        report.skipped, 1,
        "the companion of the refused recording is not attempted"
    );
    assert!(
        report.failures[0].contains("FAIL-C.wav")
            && report.failures[0].contains("access denied (injected)"),
        "{:?}",
        report.failures
    );
    assert!(report.aborted.is_none());
    for id in ["A", "B", "D"] {
        assert!(!w.exists(&format!("calls/quality/{old}/{id}.wav")));
        assert!(!w.exists(&format!("transcripts/{id}.txt")));
    }
    assert!(w.exists(&format!("calls/quality/{old}/FAIL-C.wav")));
    assert!(w.exists("transcripts/FAIL-C.txt"));

    // Every intent has an outcome; the failure is on record. The skipped
    // companion stays pending, for the next run to finish or abandon with
    // its recording (a failed recording itself is planned afresh).
    let pending: Vec<String> = ledger
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.intent.key)
        .collect();
    assert_eq!(pending, vec!["transcripts/FAIL-C.txt".to_string()]);
    let outcomes: Vec<_> = ledger
        .outcomes(1, i64::MAX)
        .map(|r| r.unwrap().1)
        .collect()
        .await;
    assert_eq!(outcomes.len(), 8);
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| o.outcome.result == Status::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].intent.key.ends_with("FAIL-C.wav"));
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.outcome.result == Status::Skipped)
            .count(),
        1
    );
    assert!(ledger.verify().await.unwrap().problems.is_empty());

    // The next run's recovery finds the recording still there: the companion
    // is abandoned, and both are planned afresh.
    let stores = std::collections::HashMap::from([("recordings".to_string(), store.clone())]);
    let recovered = execute::recover(
        &stores,
        ledger.pending().await.unwrap(),
        &ledger.journal("run-2"),
        &lethe::clock::SystemClock,
    )
    .await;
    assert_eq!(recovered.failed, 0, "{recovered:?}");
    assert!(ledger.pending().await.unwrap().is_empty());
    assert!(w.exists("transcripts/FAIL-C.txt"));
}

#[tokio::test]
async fn a_stop_request_finishes_the_batch_in_progress_and_starts_no_other() {
    let w = World::new();
    let old = months_ago(30);
    for id in ["A", "B", "C", "D", "E", "F"] {
        w.put(&format!("calls/quality/{old}/{id}.wav"), "audio");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let inner = Arc::new(LocalFileSystem::new_with_prefix(w.store()).unwrap());
    let store = Store::from_object_store(
        "recordings",
        "file:///test",
        Arc::new(RefusingStore {
            inner,
            needle: "never",
            trip: Some(stop.clone()),
        }),
    )
    // One batch deletes at a time; one more may be recorded beside it.
    .with_max_in_flight(1);
    let policy = Policy::from_sources(vec![(
        "p.yaml".into(),
        "p.yaml".into(),
        POLICY.as_bytes().to_vec(),
    )])
    .unwrap();
    let now = chrono::Utc::now();
    let items = crate::plan_items(&store, &policy, &lethe::decide::Orders::default(), now).await;
    let ledger = Ledger::open(&DatabaseUrl::new(format!(
        "sqlite://{}?mode=rwc",
        w.path("stop.db").display()
    )))
    .await
    .unwrap();
    let report = execute::execute(
        &store,
        futures::stream::iter(items),
        &ledger.journal("run-stop"),
        Options {
            batch: 2,
            concurrency: 1,
            stop: Some(stop.clone()),
            ..Default::default()
        },
    )
    .await;
    assert!(report.interrupted, "the stop request is reported");
    // The stop came with the first deletion: the batch deleting then
    // completes, and so does the one recorded beside it if its intents were
    // already durable; the third batch is never started.
    let deleted = report.recordings_deleted;
    assert!(
        deleted == 2 || deleted == 4,
        "the batches in progress complete, no later batch starts: {deleted} deleted"
    );
    let left = ["A", "B", "C", "D", "E", "F"]
        .iter()
        .filter(|id| w.exists(&format!("calls/quality/{old}/{id}.wav")))
        .count() as u64;
    assert_eq!(left, 6 - deleted);
    assert!(
        ledger.pending().await.unwrap().is_empty(),
        "nothing is left half-done"
    );
    assert!(ledger.verify().await.unwrap().problems.is_empty());
}

/// Denies every deletion the way S3's DeleteObjects does: one answer per key,
/// each naming its key with its own code and message (answers in reverse
/// order, since nothing promises the order).
#[derive(Debug)]
struct DeniedStore {
    inner: Arc<LocalFileSystem>,
}

impl fmt::Display for DeniedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeniedStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for DeniedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        futures::stream::once(async move {
            let mut all: Vec<object_store::Result<Path>> = locations.collect().await;
            all.reverse();
            futures::stream::iter(all.into_iter().map(|p| {
                let p = p?;
                let code = if p.as_ref().ends_with(".json") { "AccessDenied" } else { "AllAccessDisabled" };
                Err(object_store::Error::Generic {
                    store: "S3",
                    source: format!(
                        "DeleteObjects request failed for key {p}: Access Denied to {p} (code: {code})"
                    )
                    .into(),
                })
            }))
        })
        .flatten()
        .boxed()
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn each_key_a_bulk_delete_denies_is_reported_with_its_own_error() {
    let w = World::new();
    // Twenty recordings, and a sidecar whose key contains one of them.
    let mut keys: Vec<String> = (0..20).map(|i| format!("calls/a{i}.wav")).collect();
    keys.push("calls/a0.wav.json".into());
    for k in &keys {
        w.put(k, "audio");
    }
    let inner = Arc::new(LocalFileSystem::new_with_prefix(w.store()).unwrap());
    let store = Store::from_object_store(
        "recordings",
        "file:///test",
        Arc::new(DeniedStore { inner }),
    );
    let results = execute::delete_verified(&store, &keys, 4).await;
    for (key, execute::Verdict { status, detail, .. }) in keys.iter().zip(&results) {
        assert_eq!(*status, Status::Failed, "{key}");
        let detail = detail.as_deref().unwrap_or_default();
        let code = if key.ends_with(".json") {
            "AccessDenied)"
        } else {
            "AllAccessDisabled)"
        };
        assert!(
            detail.contains(&format!(
                "failed for key {key}: Access Denied to {key} (code: {code}"
            )),
            "{key}: {detail}"
        );
        assert!(!detail.contains("more errors"), "{key}: {detail}");
        assert!(w.exists(key), "{key} must remain");
    }
}

/// Counts `head` and `list` requests, fails every delete of one key (the
/// object stays), and hides that key from the first listing: a store whose
/// listing lies once about what it holds.
#[derive(Debug)]
struct Witness {
    inner: Arc<LocalFileSystem>,
    stuck: Path,
    heads: std::sync::atomic::AtomicUsize,
    lists: std::sync::atomic::AtomicUsize,
    hidden: AtomicBool,
}

impl fmt::Display for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Witness({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Witness {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head {
            self.heads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let stuck = self.stuck.clone();
        let inner = self.inner.clone();
        locations
            .map(move |p| {
                let inner = inner.clone();
                let stuck = stuck.clone();
                async move {
                    let p = p?;
                    if p == stuck {
                        return Err(object_store::Error::Generic {
                            store: "S3",
                            source: "InternalError: We encountered an internal error".into(),
                        });
                    }
                    object_store::ObjectStoreExt::delete(inner.as_ref(), &p).await?;
                    Ok(p)
                }
            })
            .buffered(4)
            .boxed()
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        let hide = !self.hidden.swap(true, Ordering::SeqCst);
        let stuck = self.stuck.clone();
        self.inner
            .list(prefix)
            .filter(move |m| {
                let hidden = hide && m.as_ref().is_ok_and(|m| m.location == stuck);
                std::future::ready(!hidden)
            })
            .boxed()
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Absence verified by listing: 300 deletions among 600 kept objects are
/// checked with one listing of their range and no `head`, except for the
/// one key whose delete the store did not confirm: the listing hides it
/// once, and only a `head` shows it is still there, so it is never
/// certified. With `verify = "head"` every key gets a `head`.
#[tokio::test]
async fn absence_is_verified_by_one_listing_and_a_hiding_listing_certifies_nothing() {
    use lethe::store::Verification;
    let w = World::new();
    let mut doomed: Vec<String> = Vec::new();
    for i in 0..900 {
        let key = format!("calls/2024/{:03}/r{i:04}.wav", i % 3);
        w.put(&key, "audio");
        if i % 3 == 1 {
            doomed.push(key);
        }
    }
    let stuck = doomed[150].clone();
    let witness = |verification| {
        let store = Arc::new(Witness {
            inner: Arc::new(LocalFileSystem::new_with_prefix(w.store()).unwrap()),
            stuck: Path::parse(&stuck).unwrap(),
            heads: Default::default(),
            lists: Default::default(),
            hidden: AtomicBool::new(false),
        });
        let s = Store::from_object_store("recordings", "s3://test", store.clone())
            .with_verification(verification);
        (s, store)
    };
    let (store, counts) = witness(Verification::Listing);
    let results = execute::delete_verified(&store, &doomed, 4).await;
    for (
        key,
        execute::Verdict {
            status,
            detail,
            verified_by,
        },
    ) in doomed.iter().zip(&results)
    {
        if *key == stuck {
            assert_eq!(*status, Status::Failed, "{detail:?}");
            assert_eq!(*verified_by, None);
            assert!(w.exists(key), "the stuck key is still there");
        } else {
            assert_eq!(*status, Status::Deleted, "{key}: {detail:?}");
            assert_eq!(*verified_by, Some(Verification::Listing), "{key}");
            assert!(!w.exists(key), "{key}");
        }
    }
    let heads = counts.heads.load(Ordering::SeqCst);
    let lists = counts.lists.load(Ordering::SeqCst);
    // One listing per attempt (four for the stuck key's retries); a head
    // per attempt for the one key the store did not confirm.
    assert_eq!(heads, 4, "heads");
    assert!(lists <= 4, "{lists} listings");
    // The same with a head per key.
    for i in 0..30 {
        w.put(&format!("calls/2025/r{i}.wav"), "audio");
    }
    let keys: Vec<String> = (0..30).map(|i| format!("calls/2025/r{i}.wav")).collect();
    let (store, counts) = witness(Verification::Head);
    let results = execute::delete_verified(&store, &keys, 4).await;
    assert!(
        results
            .iter()
            .all(|v| v.status == Status::Deleted && v.verified_by == Some(Verification::Head)),
        "{results:?}"
    );
    assert_eq!(counts.heads.load(Ordering::SeqCst), 30);
    assert_eq!(counts.lists.load(Ordering::SeqCst), 0);
}
