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
    );
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
    assert_eq!(
        report.recordings_deleted, 2,
        "the batch in progress completes, no later batch starts"
    );
    let left = ["A", "B", "C", "D", "E", "F"]
        .iter()
        .filter(|id| w.exists(&format!("calls/quality/{old}/{id}.wav")))
        .count();
    assert_eq!(left, 4);
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
    for (key, (status, detail)) in keys.iter().zip(&results) {
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
