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
    /// A store at `s3://BUCKET/STORE` (or Azure, GCS) and certificates at `s3://BUCKET/CERTS`.
    Object {
        kind: Kind,
        store: &'static str,
        certs: &'static str,
    },
}

fn s3(store: &'static str, certs: &'static str) -> Layout {
    Layout::Object {
        kind: Kind::S3,
        store,
        certs,
    }
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
            Layout::Object { kind, store, certs } => {
                let bucket = Bucket::new(*kind).await;
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
    an_s3_destination_inside_the_store_is_invisible_to_it: s3("", "certificates") => 0,
    an_s3_destination_beside_the_store_is_used: s3("calls-store", "certificates") => 0,
    an_s3_destination_in_a_sibling_prefix_is_beside_the_store: s3("rec", "rec-certificates") => 0,
    an_s3_destination_at_the_store_root_is_a_config_error: s3("rec", "rec") => 2,
    an_s3_destination_containing_the_store_is_a_config_error: s3("tenant/rec", "tenant") => 2,
}

/// A world with certificate #1 issued, and a second expired recording to delete.
async fn one_certificate_issued(layout: &Layout) -> Case {
    let case = Case::new(layout).await;
    assert_exit(&case.w.lethe(&["run"]), 0);
    assert!(case.has_file("lethe-cert-000001.json").await);
    case.put_recording(&case.recording).await;
    case
}

impl Case {
    /// The bytes of lethe's file `name` in the certificate destination.
    async fn file(&self, name: &str) -> Vec<u8> {
        match &self.bucket {
            None => read(&self.w.path(&self.certs).join(name)),
            Some(b) => {
                use object_store::ObjectStoreExt;
                let path =
                    object_store::path::Path::parse(format!("{}/{name}", self.certs)).unwrap();
                b.client
                    .get(&path)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .to_vec()
            }
        }
    }

    /// Runs lethe expecting a refusal because the ledger does not know the
    /// destination's certificates; checks that nothing changed.
    async fn assert_refused(&self, out: &std::process::Output, before: &[Vec<u8>]) {
        assert_exit(out, 2);
        let err = stderr(out);
        assert!(
            err.contains("lethe-cert-000001.json is not this ledger's")
                && err.contains("nothing was deleted")
                && err.contains("Restore that ledger")
                && err.contains("point `certificates` at a new destination"),
            "{err}"
        );
        assert!(self.exists(&self.recording).await, "nothing is deleted");
        assert_eq!(
            [
                self.file("lethe-cert-000001.json").await,
                self.file("lethe-cert-000001.manifest.jsonl").await
            ],
            before,
            "the certificate and its manifest are untouched byte for byte"
        );
        assert!(!self.has_file("lethe-cert-000002.json").await);
    }
}

async fn a_lost_ledger_then_restored(layout: Layout) {
    let case = one_certificate_issued(&layout).await;
    let before = [
        case.file("lethe-cert-000001.json").await,
        case.file("lethe-cert-000001.manifest.jsonl").await,
    ];
    // The ledger is lost (moved away): the fresh one knows no certificate.
    std::fs::rename(case.w.path("lethe.db"), case.w.path("lethe.db.lost")).unwrap();
    let out = case.w.lethe(&["run"]);
    case.assert_refused(&out, &before).await;
    // A typo in LETHE_DATABASE is another fresh ledger.
    let mut typo = case.w.command(&["run"]);
    typo.env("LETHE_DATABASE", "sqlite://lethe-typo.db?mode=rwc");
    case.assert_refused(&typo.output().unwrap(), &before).await;
    // The old ledger restored: the run proceeds and continues the chain.
    std::fs::remove_file(case.w.path("lethe.db")).unwrap();
    std::fs::rename(case.w.path("lethe.db.lost"), case.w.path("lethe.db")).unwrap();
    assert_exit(&case.w.lethe(&["run"]), 0);
    assert!(!case.exists(&case.recording).await);
    assert_eq!(case.file("lethe-cert-000001.json").await, before[0]);
    assert!(case.has_file("lethe-cert-000002.json").await);
    assert_exit(&case.w.lethe(&["ledger", "verify"]), 0);
}

/// A second installation shares the destination: its ledger has a
/// certificate #1 of its own, which is not the #1 there.
async fn another_ledgers_certificate_of_the_same_number(layout: Layout) {
    let mut case = one_certificate_issued(&layout).await;
    let before = [
        case.file("lethe-cert-000001.json").await,
        case.file("lethe-cert-000001.manifest.jsonl").await,
    ];
    // The other installation's ledger issues its #1 into a folder of its own...
    std::fs::rename(case.w.path("lethe.db"), case.w.path("lethe.db.mine")).unwrap();
    let (shared, tail) = (case.w.certificates.clone(), case.w.tail.clone());
    case.w.certificates = "\"elsewhere\"".into();
    case.w.tail.clear();
    case.w.write_config();
    assert_exit(&case.w.lethe(&["run"]), 0);
    case.put_recording(&case.recording).await;
    // ...then is pointed at the shared destination.
    (case.w.certificates, case.w.tail) = (shared, tail);
    case.w.write_config();
    let out = case.w.lethe(&["run"]);
    case.assert_refused(&out, &before).await;
    assert!(
        stderr(&out).contains("this ledger recorded another certificate #1"),
        "{}",
        stderr(&out)
    );
    // The destination's own ledger is still welcome.
    std::fs::rename(case.w.path("lethe.db.mine"), case.w.path("lethe.db")).unwrap();
    assert_exit(&case.w.lethe(&["run"]), 0);
    assert!(case.has_file("lethe-cert-000002.json").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_ledger_refuses_to_run_and_the_restored_one_continues() {
    a_lost_ledger_then_restored(Layout::Local("certificates")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_ledger_refuses_to_run_with_certificates_on_s3() {
    a_lost_ledger_then_restored(s3("rec", "certificates")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_installation_sharing_the_folder_refuses_to_run() {
    another_ledgers_certificate_of_the_same_number(Layout::Local("certificates")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_installation_sharing_the_s3_prefix_refuses_to_run() {
    another_ledgers_certificate_of_the_same_number(s3("rec", "certificates")).await
}

/// A file lethe did not write sits under the name of the next manifest:
/// the run does not replace it (a conditional put on object stores, a link
/// that never replaces on a folder) and says so; once it is moved away, the
/// next run writes the certificate from the ledger.
async fn a_foreign_file_is_never_replaced(layout: Layout) {
    let case = one_certificate_issued(&layout).await;
    let name = "lethe-cert-000002.manifest.jsonl";
    let foreign_key = format!("{}/{name}", case.certs);
    match &case.bucket {
        None => case.w.write(&foreign_key, "foreign"),
        Some(b) => b.put(&foreign_key, "foreign").await,
    }
    let out = case.w.lethe(&["run"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains(&format!("{name} already exists with SHA-256"))
            && stderr(&out).contains("lethe's certificate #2 would have SHA-256"),
        "{}",
        stderr(&out)
    );
    assert_eq!(case.file(name).await, b"foreign");
    assert!(!case.has_file("lethe-cert-000002.json").await);
    match &case.bucket {
        None => std::fs::remove_file(case.w.path(&foreign_key)).unwrap(),
        Some(b) => {
            use object_store::ObjectStoreExt;
            b.client
                .delete(&object_store::path::Path::parse(&foreign_key).unwrap())
                .await
                .unwrap()
        }
    }
    assert_exit(&case.w.lethe(&["run"]), 0);
    assert!(case.has_file("lethe-cert-000002.json").await);
    assert_ne!(case.file(name).await, b"foreign");
    assert_exit(&case.w.lethe(&["ledger", "verify"]), 0);
}

mod a_file_already_under_the_next_name_is_never_replaced {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn local() {
        a_foreign_file_is_never_replaced(Layout::Local("certificates")).await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn s3() {
        a_foreign_file_is_never_replaced(super::s3("rec", "certificates")).await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn azure() {
        a_foreign_file_is_never_replaced(Layout::Object {
            kind: Kind::Azure,
            store: "rec",
            certs: "certificates",
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn gcs() {
        a_foreign_file_is_never_replaced(Layout::Object {
            kind: Kind::Gcs,
            store: "rec",
            certs: "certificates",
        })
        .await
    }
}

/// A store whose `head` never finds anything, so that a create-new write
/// rests on the store's conditional put alone (as when another writer
/// creates the key between lethe's `head` and its put).
#[derive(Debug)]
struct BlindHead(std::sync::Arc<dyn object_store::ObjectStore>);

impl std::fmt::Display for BlindHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlindHead({})", self.0)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for BlindHead {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.0.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        if options.head {
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "blind".into(),
            });
        }
        self.0.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.0.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.0.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.0.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}

/// moto and Azurite refuse a second `PutMode::Create` of one key themselves.
/// (fake-gcs-server ignores the precondition: on GCS the suite relies on
/// lethe's `head` before the put, see `Store::put_new`.)
async fn the_conditional_put_alone_never_replaces(kind: Kind) {
    use lethe::store::Written;
    let bucket = Bucket::new(kind).await;
    let store = lethe::store::Store::from_object_store(
        "certificates",
        "test://",
        std::sync::Arc::new(BlindHead(bucket.client.clone())),
    );
    let key = "lethe-cert-000001.json";
    assert_eq!(
        store.put_new(key, b"first".to_vec()).await.unwrap(),
        Written::Created
    );
    assert_eq!(
        store.put_new(key, b"second".to_vec()).await.unwrap(),
        Written::Exists
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    assert!(store.get_to_file(key, file.path()).await.unwrap());
    assert_eq!(read(file.path()), b"first");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conditional_put_alone_never_replaces_on_s3() {
    the_conditional_put_alone_never_replaces(Kind::S3).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conditional_put_alone_never_replaces_on_azure() {
    the_conditional_put_alone_never_replaces(Kind::Azure).await
}

/// Two runs, two certificates (local folder), on `db`.
async fn two_certificates(db: Db) -> World {
    let mut w = World::new();
    w.use_db(db).await;
    w.put(&format!("calls/quality/{}/A.wav", months_ago(30)), "audio");
    assert_exit(&w.lethe(&["run"]), 0);
    w.put(&format!("calls/quality/{}/B.wav", months_ago(30)), "audio");
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(w.cert(2).exists());
    w
}

fn last_line(out: &std::process::Output) -> String {
    stdout(out).lines().last().unwrap_or_default().to_string()
}

async fn a_missing_certificate_fails_both_verifications(db: Db) {
    let w = two_certificates(db).await;
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
    std::fs::remove_file(w.cert(1)).unwrap();

    let verify = w.lethe(&["verify", w.cert(2).to_str().unwrap()]);
    assert_exit(&verify, 4);
    assert_eq!(
        last_line(&verify),
        "VERIFICATION FAILED: chain not checked: previous certificate missing (--allow-missing-previous accepts that)"
    );
    let allowed = w.lethe(&[
        "verify",
        w.cert(2).to_str().unwrap(),
        "--allow-missing-previous",
    ]);
    assert_exit(&allowed, 0);
    assert_eq!(
        last_line(&allowed),
        "verified (chain not checked: previous certificate missing)"
    );

    let ledger = w.lethe(&["ledger", "verify"]);
    assert_exit(&ledger, 4);
    assert!(
        stdout(&ledger).contains(&format!(
            "FAIL  certificate #1 is recorded in the ledger but {} is missing",
            w.cert(1).display()
        )),
        "{}",
        stdout(&ledger)
    );
    assert_eq!(last_line(&ledger), "VERIFICATION FAILED");

    // Another file under its name (a valid certificate, but not the recorded one).
    std::fs::copy(w.cert(2), w.cert(1)).unwrap();
    let ledger = w.lethe(&["ledger", "verify"]);
    assert_exit(&ledger, 4);
    assert!(
        stdout(&ledger).contains("certificate #1 at ")
            && stdout(&ledger).contains("the ledger records"),
        "{}",
        stdout(&ledger)
    );

    // A missing manifest is a missing part of the evidence too.
    let w = two_certificates(db).await;
    std::fs::remove_file(w.manifest(1)).unwrap();
    let ledger = w.lethe(&["ledger", "verify"]);
    assert_exit(&ledger, 4);
    assert!(
        stdout(&ledger).contains("certificate #1's manifest"),
        "{}",
        stdout(&ledger)
    );
}

for_each_db! {
    a_missing_certificate_fails_verify_and_ledger_verify => a_missing_certificate_fails_both_verifications,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_missing_from_s3_is_named_by_its_url() {
    let case = one_certificate_issued(&s3("rec", "certs")).await;
    assert_exit(&case.w.lethe(&["run"]), 0);
    let bucket = case.bucket.as_ref().unwrap();
    let (url, _) = bucket.url_and_options("certs");
    {
        use object_store::ObjectStoreExt;
        bucket
            .client
            .delete(&object_store::path::Path::parse("certs/lethe-cert-000001.json").unwrap())
            .await
            .unwrap();
    }
    let verify = case
        .w
        .lethe(&["verify", &format!("{url}/lethe-cert-000002.json")]);
    assert_exit(&verify, 4);
    let text = stdout(&verify);
    assert!(
        text.contains(&format!("{url}/lethe-cert-000001.json is not there")),
        "{text}"
    );
    let tmp = std::env::temp_dir().display().to_string();
    assert!(!text.contains(&tmp), "a temporary path is named: {text}");
    assert!(
        last_line(&verify).starts_with("VERIFICATION FAILED: chain not checked"),
        "{text}"
    );

    let ledger = case.w.lethe(&["ledger", "verify"]);
    assert_exit(&ledger, 4);
    assert!(
        stdout(&ledger).contains(&format!(
            "certificate #1 is recorded in the ledger but {url}/lethe-cert-000001.json is missing"
        )),
        "{}",
        stdout(&ledger)
    );
}
