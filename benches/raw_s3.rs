//! The floor lethe is measured against on S3: object_store's own listing and
//! bulk delete (`delete_stream`: DeleteObjects of 1,000 keys, 20 in flight),
//! with no classification, ledger, verification or certificate.
//!
//! usage: cargo bench --bench raw_s3 -- ENDPOINT BUCKET KEYS_FILE
//! Lists the whole bucket, then deletes the keys of KEYS_FILE (one per
//! line: what lethe deleted from an identical bucket) that the listing
//! showed. Prints `listed N deleted M seconds S`. Credentials are the
//! emulator's test ones; the endpoint must be on loopback.

use std::collections::HashSet;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [endpoint, bucket, keys_file] = args.as_slice() else {
        eprintln!("usage: raw_s3 ENDPOINT BUCKET KEYS_FILE");
        std::process::exit(2);
    };
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "loopback endpoints only"
    );
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .build()
        .expect("an S3 client");
    let wanted: HashSet<String> = std::fs::read_to_string(keys_file)
        .expect("the keys file")
        .lines()
        .map(str::to_string)
        .collect();
    let started = Instant::now();
    let mut listed = 0u64;
    let mut doomed = Vec::new();
    let mut listing = store.list(None);
    while let Some(meta) = listing.try_next().await.expect("listing") {
        listed += 1;
        if wanted.contains(meta.location.as_ref()) {
            doomed.push(Ok(meta.location));
        }
    }
    let deleted = store
        .delete_stream(futures::stream::iter(doomed).boxed())
        .try_fold(0u64, |n, _| async move { Ok(n + 1) })
        .await
        .expect("bulk delete");
    println!(
        "listed {listed} deleted {deleted} seconds {:.3}",
        started.elapsed().as_secs_f64()
    );
}
