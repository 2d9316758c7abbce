//! Where certificates go, and what happens to the ones already there: a
//! destination inside a store is invisible to its listing, one that is the
//! store's root or contains it is a config error; certificates are never
//! replaced, and a ledger that does not know a destination's certificates
//! refuses to run.

use crate::cloud::{Bucket, Kind};
use crate::*;

/// A catch-all rule whose recordings expire at once: anything a listing
/// returns, lethe's own files included if they were listed, would be deleted.
const CATCH_ALL: &str = "purposes:\n  now: { retain: 0 days, basis: \"test\" }\nrecordings:\n  - { name: all, store: recordings, match: \"**/{call_id}.json\", purposes: [now] }\n";

/// Where the store and the certificates are, for one case.
enum Layout {
    /// A local store `recordings/` and `certificates = VALUE`.
    Local(&'static str),
    /// An S3 store at `s3://BUCKET/STORE` and certificates at `s3://BUCKET/CERTS`.
    S3 {
        store: &'static str,
        certs: &'static str,
    },
}

/// A world laid out as `layout` says, with one expired recording `calls/A.json`.
struct Case {
    w: World,
    bucket: Option<Bucket>,
    /// The certificates' key prefix in the bucket, or their local folder.
    certs: String,
    /// The recording's key in the store's folder or bucket.
    recording: String,
}

impl Case {
    async fn new(layout: &Layout) -> Case {
        let mut w = World::new();
        w.write("policies/retention.yaml", CATCH_ALL);
        let case = match layout {
            Layout::Local(certificates) => {
                w.certificates = format!("\"{certificates}\"");
                w.write_config();
                Case {
                    w,
                    bucket: None,
                    certs: certificates.to_string(),
                    recording: "calls/A.json".into(),
                }
            }
            Layout::S3 { store, certs } => {
                let bucket = Bucket::new(Kind::S3).await;
                w.stores = bucket.store_toml("recordings", store, "");
                let (url, options) = bucket.url_and_options(certs);
                w.certificates = format!("\"{url}\"");
                w.tail = format!("\n[certificates_options]\n{options}");
                w.env = bucket.env();
                w.write_config();
                Case {
                    w,
                    bucket: Some(bucket),
                    certs: certs.to_string(),
                    recording: match store.is_empty() {
                        true => "calls/A.json".into(),
                        false => format!("{store}/calls/A.json"),
                    },
                }
            }
        };
        case.put_recording(&case.recording).await;
        case
    }

    async fn put_recording(&self, key: &str) {
        match &self.bucket {
            None => self.w.put(key, "{}"),
            Some(b) => b.put(key, "{}").await,
        }
    }

    async fn exists(&self, key: &str) -> bool {
        match &self.bucket {
            None => self.w.exists(key),
            Some(b) => b.exists(key).await,
        }
    }

    /// Whether lethe's file `name` is in the certificate destination.
    async fn has_file(&self, name: &str) -> bool {
        match &self.bucket {
            None => self.w.path(&self.certs).join(name).exists(),
            Some(b) => b.exists(&format!("{}/{name}", self.certs)).await,
        }
    }
}

async fn a_destination_case(layout: Layout, expected: i32) {
    let case = Case::new(&layout).await;
    let recording = case.recording.clone();
    let out = case.w.lethe(&["run"]);
    assert_exit(&out, expected);
    if expected != 0 {
        assert!(stderr(&out).contains("certificates: "), "{}", stderr(&out));
        assert!(case.exists(&recording).await, "nothing is deleted");
        assert!(!case.has_file("lethe-cert-000001.json").await);
        assert_exit(&case.w.lethe(&["plan"]), expected);
        return;
    }
    assert!(
        !case.exists(&recording).await,
        "the expired recording is gone"
    );
    // A second run lists the store again: lethe's files there are not recordings.
    case.put_recording(&recording).await;
    let plan = case.w.lethe(&["plan"]);
    assert_exit(&plan, 0);
    assert!(!stdout(&plan).contains("lethe-cert"), "{}", stdout(&plan));
    assert_exit(&case.w.lethe(&["run"]), 0);
    for name in [
        "lethe-cert-000001.json",
        "lethe-cert-000001.manifest.jsonl",
        "lethe-cert-000002.json",
        "lethe-cert-000002.manifest.jsonl",
    ] {
        assert!(case.has_file(name).await, "{name} was deleted");
    }
    assert!(!case.exists(&recording).await);
    let ledger = case.w.lethe(&["ledger", "verify"]);
    assert_exit(&ledger, 0);
}

macro_rules! destination_cases {
    ($($name:ident: $layout:expr => $exit:expr,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                a_destination_case($layout, $exit).await
            }
        )*
    };
}

destination_cases! {
    a_local_destination_beside_the_store_is_used: Layout::Local("certificates") => 0,
    a_local_destination_inside_the_store_is_invisible_to_it: Layout::Local("recordings/certificates") => 0,
    a_local_destination_among_the_recordings_leaves_them_to_the_policy: Layout::Local("recordings/calls") => 0,
    a_local_destination_at_the_store_root_is_a_config_error: Layout::Local("recordings") => 2,
    a_local_destination_spelled_otherwise_at_the_root_is_a_config_error: Layout::Local("./recordings/calls/..") => 2,
    a_local_destination_containing_the_store_is_a_config_error: Layout::Local(".") => 2,
    an_s3_destination_inside_the_store_is_invisible_to_it: Layout::S3 { store: "", certs: "certificates" } => 0,
    an_s3_destination_beside_the_store_is_used: Layout::S3 { store: "calls-store", certs: "certificates" } => 0,
    an_s3_destination_in_a_sibling_prefix_is_beside_the_store: Layout::S3 { store: "rec", certs: "rec-certificates" } => 0,
    an_s3_destination_at_the_store_root_is_a_config_error: Layout::S3 { store: "rec", certs: "rec" } => 2,
    an_s3_destination_containing_the_store_is_a_config_error: Layout::S3 { store: "tenant/rec", certs: "tenant" } => 2,
}
