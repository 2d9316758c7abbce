//! Requests per deleted object on S3, counted by a loopback proxy in front
//! of moto (`scripts/emulators/counting-proxy.py`): what a run costs in
//! requests, which on a real store is latency and money.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use futures::StreamExt;

use crate::cloud::{Bucket, Kind, azurite, gcs, http, s3_endpoint};
use crate::*;

/// The counting proxy, stopped when dropped.
pub(crate) struct Proxy {
    child: Child,
    pub url: String,
}

impl Proxy {
    pub fn start(backend: &str) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/emulators/counting-proxy.py"
        );
        let backend = backend.trim_start_matches("http://").trim_end_matches('/');
        let mut child = Command::new("python3")
            .args([script, "--listen", "127.0.0.1:0", "--backend", backend])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 for the counting proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("counting proxy: {line:?}"));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The requests counted so far, by kind.
    pub async fn counts(&self) -> BTreeMap<String, u64> {
        self.figures("_counts").await
    }

    /// The most requests of each kind that were in flight at once.
    pub async fn peaks(&self) -> BTreeMap<String, u64> {
        self.figures("_peaks").await
    }

    async fn figures(&self, what: &str) -> BTreeMap<String, u64> {
        let body = http()
            .get(format!("{}/{what}", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// Sets the proxy's faults: `{"delay": {KIND: SECONDS}, "slowdown": N}`.
    pub async fn faults(&self, faults: serde_json::Value) {
        let r = http()
            .post(format!("{}/_faults", self.url))
            .body(faults.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    pub async fn reset(&self) {
        http()
            .post(format!("{}/_counts/reset", self.url))
            .send()
            .await
            .unwrap();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 1,500 expired recordings, a sidecar for every tenth and a transcript
/// (companion) for every third, among 300 recent ones, on S3 declared
/// lexicographic (as AWS S3 is by default): the run lists, deletes in
/// bulk and verifies by listing, with no `head` at all and a few list and
/// delete requests per thousand objects (companions found in the scan's
/// listing, not listed again); each sidecar is read once (the floor). Every expired object is gone and certified, every recent one
/// stays.
#[tokio::test]
async fn a_run_on_s3_sends_a_few_requests_per_thousand_deletions() {
    let counts = requests_per_deletion(Kind::S3).await;
    assert_eq!(counts.get("delete"), None, "deletes go in bulk: {counts:?}");
}

/// The same on Azurite and fake-gcs-server: no `head` per object, a few
/// listings per thousand deletions, each sidecar read once (object_store
/// deletes Azure blobs in batches of 256 and GCS objects one a request).
#[tokio::test]
async fn a_run_on_azure_or_gcs_sends_no_head_and_a_few_listings() {
    for kind in [Kind::Azure, Kind::Gcs] {
        requests_per_deletion(kind).await;
    }
}

/// Runs the corpus on `kind` through the counting proxy; checks what every
/// store must show and returns the counts.
async fn requests_per_deletion(kind: Kind) -> BTreeMap<String, u64> {
    let bucket = Bucket::new(kind).await;
    let backend = match kind {
        Kind::S3 => s3_endpoint(),
        Kind::Azure => azurite(),
        Kind::Gcs => gcs(),
    };
    let proxy = Proxy::start(&backend);
    let mut w = World::new();
    w.stores = bucket
        .store_toml(
            "recordings",
            "tenant-a",
            "listing_order = \"lexicographic\"\n",
        )
        .replace(&backend, &proxy.url);
    // Azurite's address is also in the environment (object_store's emulator mode).
    w.env = bucket
        .env()
        .into_iter()
        .map(|(k, v)| (k, v.replace(&backend, &proxy.url)))
        .collect();
    w.write_config();
    let old = format!("calls/quality/{}", months_ago(20));
    let new = format!("calls/quality/{}", months_ago(1));
    let mut objects: Vec<(String, &str)> = Vec::new();
    let mut expired = Vec::new();
    for i in 0..1500 {
        let id = format!("C-{i:05}");
        objects.push((format!("{old}/{id}.wav"), "audio"));
        expired.push(format!("{old}/{id}.wav"));
        if i % 10 == 0 {
            objects.push((format!("{old}/{id}.json"), r#"{"purposes":["quality"]}"#));
            expired.push(format!("{old}/{id}.json"));
        }
        if i % 3 == 0 {
            objects.push((format!("transcripts/{id}.txt"), "text"));
            expired.push(format!("transcripts/{id}.txt"));
        }
    }
    let mut kept = Vec::new();
    for i in 0..300 {
        let key = format!("{new}/N-{i:05}.wav");
        objects.push((key.clone(), "audio"));
        kept.push(key);
    }
    futures::stream::iter(objects.iter())
        .for_each_concurrent(16, |(k, body)| {
            let bucket = &bucket;
            async move { bucket.put(&format!("tenant-a/{k}"), body).await }
        })
        .await;
    proxy.reset().await;
    w.env.push(("LETHE_LOG".into(), "lethe=debug".into()));
    let out = w.lethe(&["run", "--log-format", "json"]);
    assert_exit(&out, 0);
    let checks: Vec<String> = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "keys checked by listing")
        .map(|v| {
            let f = &v["fields"];
            format!(
                "{}/{}{}",
                f["keys"],
                f["listed"],
                if f["complete"] == true { "" } else { " cut" }
            )
        })
        .collect();
    println!("requests: range listings (keys/entries listed): {checks:?}");
    let counts = proxy.counts().await;
    let count = |k: &str| counts.get(k).copied().unwrap_or(0);
    let deleted = expired.len() as f64;
    let requests = count("list") + count("head") + count("delete") + count("delete-batch");
    println!(
        "requests: {kind:?}: {} objects deleted, {} kept: {counts:?}; list+head+delete per deleted object {:.4}, gets {} for {} sidecars",
        expired.len(),
        kept.len(),
        requests as f64 / deleted,
        count("get"),
        expired.iter().filter(|k| k.ends_with(".json")).count()
    );
    let left = bucket.keys().await;
    for k in &expired {
        assert!(
            !left.contains(&format!("tenant-a/{k}")),
            "{k} is still there"
        );
    }
    for k in &kept {
        assert!(left.contains(&format!("tenant-a/{k}")), "{k} is gone");
    }
    assert_eq!(sorted(w.manifest_keys(1)), sorted(expired.clone()));
    // On Azure, one head per run: the deletion-mode probe asks the first
    // blob for a version id (`store::probe`).
    let probe_heads = u64::from(kind == Kind::Azure);
    assert_eq!(count("head"), probe_heads, "{kind:?}: {counts:?}");
    assert_eq!(
        count("get"),
        150,
        "{kind:?}: each sidecar read once, nothing else: {counts:?}"
    );
    // The scan's pages (three of 1,000 keys; Azure lists 5,000 a page) and
    // per batch of 500 three range listings verifying absence (recordings,
    // sidecars, transcripts): companions are known from the scan's listing,
    // not listed again (15 listings on S3 and GCS, 14 on Azure, when each
    // batch listed its transcripts' range to find them).
    assert!(
        count("list") <= 12,
        "{kind:?}: {} listings for {deleted} deletions: {counts:?}",
        count("list")
    );
    // GCS: object_store deletes one object a request; Azure: blob batches
    // of 256.
    if kind == Kind::S3 {
        assert!(
            requests as f64 / deleted <= 0.0085,
            "{kind:?}: {requests} list, head and delete requests for {deleted} deletions: {counts:?}"
        );
    }
    counts
}

/// 3,000 expired recordings (a transcript for every third) on S3 with
/// `max_in_flight = MAX`, each DeleteObjects held a moment by the proxy;
/// with `slowdown`, the proxy answers that many DeleteObjects itself with a
/// SlowDown error for every key, as S3 does over its request rate. Returns
/// the run's output, the peak of DeleteObjects in flight and the counts,
/// after checking that every expired object is gone and certified and every
/// recent one stays.
async fn run_in_flight(
    max: usize,
    slowdown: u64,
) -> (std::process::Output, u64, BTreeMap<String, u64>) {
    let bucket = Bucket::new(Kind::S3).await;
    let backend = s3_endpoint();
    let proxy = Proxy::start(&backend);
    let mut w = World::new();
    w.stores = bucket
        .store_toml(
            "recordings",
            "t",
            &format!("listing_order = \"lexicographic\"\nmax_in_flight = {max}\n"),
        )
        .replace(&backend, &proxy.url);
    w.env = bucket.env();
    w.write_config();
    let old = format!("calls/quality/{}", months_ago(20));
    let new = format!("calls/quality/{}", months_ago(1));
    let mut objects = Vec::new();
    let mut expired = Vec::new();
    for i in 0..3000 {
        objects.push(format!("{old}/C-{i:05}.wav"));
        if i % 3 == 0 {
            objects.push(format!("transcripts/C-{i:05}.txt"));
        }
    }
    expired.extend(objects.iter().cloned());
    let kept: Vec<String> = (0..100).map(|i| format!("{new}/N-{i:05}.wav")).collect();
    objects.extend(kept.iter().cloned());
    futures::stream::iter(objects.iter())
        .for_each_concurrent(16, |k| {
            let bucket = &bucket;
            async move { bucket.put(&format!("t/{k}"), "x").await }
        })
        .await;
    proxy.reset().await;
    proxy
        .faults(serde_json::json!({"delay": {"delete-batch": 0.4}, "slowdown": slowdown}))
        .await;
    let out = w.lethe(&["run"]);
    let peaks = proxy.peaks().await;
    let counts = proxy.counts().await;
    println!(
        "in flight: max_in_flight {max}, slowdown {slowdown}: peaks {peaks:?}, counts {counts:?}"
    );
    assert_exit(&out, 0);
    let left = bucket.keys().await;
    for k in &expired {
        assert!(!left.contains(&format!("t/{k}")), "{k} is still there");
    }
    for k in &kept {
        assert!(left.contains(&format!("t/{k}")), "{k} is gone");
    }
    assert_eq!(sorted(w.manifest_keys(1)), sorted(expired));
    let peak = peaks.get("delete-batch").copied().unwrap_or(0);
    (out, peak, counts)
}

/// Several batches delete at once, never more than `max_in_flight`: with
/// each DeleteObjects held 0.4 s, two are in flight together at
/// `max_in_flight = 2`, and never a third; at 1, one at a time.
#[tokio::test]
async fn batches_delete_side_by_side_up_to_max_in_flight() {
    let (_, peak, _) = run_in_flight(2, 0).await;
    assert_eq!(peak, 2, "two batches deleting at once, never more");
    let (_, peak, _) = run_in_flight(1, 0).await;
    assert_eq!(peak, 1, "one batch at a time");
}

/// A store that answers SlowDown for every key is backed off from: the
/// batches in flight halve, the keys are deleted again after a pause, and
/// the run ends with everything deleted and certified, in no more than the
/// configured bound at any time.
#[tokio::test]
async fn a_store_that_asks_to_slow_down_gets_fewer_batches_and_the_run_completes() {
    let (out, peak, counts) = run_in_flight(4, 9).await;
    assert!(
        stderr(&out).contains("the store asks to slow down"),
        "{}",
        stderr(&out)
    );
    assert!(peak <= 4, "never past max_in_flight: {peak}");
    // 3,000 recordings and 1,000 transcripts in batches of 500: 6 bulk
    // deletes of recordings and 6 of transcripts, plus the 3 answered with
    // SlowDown and their keys' second try.
    let batches = counts.get("delete-batch").copied().unwrap_or(0);
    assert!((15..=24).contains(&batches), "{counts:?}");
}
