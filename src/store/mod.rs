//! Recording stores: a URL becomes an `object_store` client behind a guard.
//!
//! Everything lethe does to a store goes through [`Store`]: list, read a
//! sidecar, check presence, delete. Store-specific safety lives in wrappers
//! composed around the client, each an `ObjectStore` itself: for a local
//! folder [`LocalGuard`] in front of `LocalFileSystem` refuses to follow
//! symbolic links out of the root, reports every file whose name the storage
//! layer cannot represent (rather than skipping it silently, as
//! `LocalFileSystem` would), and checks before each read and delete that the
//! path still lies inside the root, is not a link and is not lethe's own;
//! for a cloud store under test, `FaultyStore` injects faults. `Store` holds
//! the composed `Arc<dyn ObjectStore>` and, for what that trait cannot carry
//! (the problems and order notices of a listing, in their place among the
//! objects, and lethe's own files declared after opening), one typed side
//! channel, [`Entries`]. The store never decides anything: it answers and it
//! deletes.

mod absence;
mod cloud;
pub mod faults;
mod local;
mod order;
mod pages;
mod probe;
mod signed;
mod throttle;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

pub use absence::{Presence, Verification};
pub use cloud::Cloud;
pub use local::{GuardError, LocalError, LocalGuard, guard_error};
pub use order::ListingOrder;
pub use probe::DeletionStatement;
pub use throttle::{DEFAULT_IN_FLIGHT, InFlight, MAX_IN_FLIGHT, Throttle, is_throttling};

use crate::config::StoreConfig;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {store}: cannot open {url}: {message}")]
    Open {
        store: String,
        url: String,
        message: String,
    },
    #[error("store {store}: listing failed: {source}")]
    List {
        store: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{key}: {source}")]
    Object {
        key: String,
        source: object_store::Error,
    },
    #[error("{key}: refused: {reason}")]
    Refused { key: String, reason: String },
}

/// What a listing yields for one entry.
#[derive(Debug, Clone)]
pub enum Listed {
    /// An object lethe can address exactly.
    Object(ObjectMeta),
    /// An entry that cannot be handled safely (a link, a name the storage layer
    /// cannot represent, an unreadable folder): kept and reported.
    Problem {
        name: String,
        reason: String,
        kind: ProblemKind,
    },
    /// The files of `folder` (a key prefix without the trailing `/`; `""` for
    /// the root) that follow, up to the first entry of one of its subfolders,
    /// come in no particular order: the folder is too large to sort in
    /// memory. Only the local walk says this.
    Unordered { folder: String },
}

/// Why a listing entry cannot be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not a regular file, a link, an unreadable folder.
    Unreadable,
    /// The store lists it, but its key cannot be addressed exactly (an
    /// empty, `.` or `..` segment, a control character, a name that is not
    /// UTF-8): deleting "it" could delete another object, or nothing.
    Unrepresentable,
}

impl ProblemKind {
    /// The stable code of plans, reports and metrics.
    pub fn code(self) -> &'static str {
        match self {
            ProblemKind::Unreadable => "unreadable-object",
            ProblemKind::Unrepresentable => "unrepresentable-key",
        }
    }
}

/// The facts about one object that a plan, an intent and a manifest carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub key: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    pub last_modified: DateTime<Utc>,
}

impl From<&ObjectMeta> for ObjectRef {
    fn from(m: &ObjectMeta) -> Self {
        Self {
            key: m.location.to_string(),
            size: m.size,
            e_tag: m.e_tag.clone(),
            last_modified: m.last_modified,
        }
    }
}

/// The result of a delete request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// The store said the object was not there.
    AlreadyAbsent,
}

#[derive(Debug, Clone)]
pub struct Store {
    name: String,
    url: String,
    inner: Arc<dyn ObjectStore>,
    /// The listing with everything it has to say, and the declaration of
    /// lethe's own files: the side channel of `inner`'s guard.
    entries: Arc<dyn Entries>,
    cloud: Option<Cloud>,
    /// A local folder behind its [`LocalGuard`] (which keeps no versions of
    /// what it deletes); `false` for any store given as an `ObjectStore`.
    local: bool,
    /// HTTP settings among the store's options, for lethe's own requests.
    client_options: object_store::ClientOptions,
    /// The order the listing yields keys in, as far as the scan may rely on
    /// it (see [`ListingOrder`]).
    order: ListingOrder,
    /// How the absence of a deleted object is checked.
    verification: Verification,
    /// How many batches delete at once (see [`Throttle`]).
    in_flight: Arc<Throttle>,
    /// The key prefix of lethe's certificate destination inside this store:
    /// the certificates, manifests and their temporary files there are never
    /// listed, read or deleted.
    certificates_prefix: Option<String>,
}

/// Whether `name` (a file name, no folder) is one lethe writes into a
/// certificate destination: `lethe-cert-NNNNNN.json`, its
/// `.manifest.jsonl`, the temporary files they are staged in, and the
/// probes a run writes before it deletes anything (`pass::preflight`).
pub fn is_certificate_file(name: &str) -> bool {
    name.starts_with("lethe-cert-")
        && (name.ends_with(".json") || name.ends_with(".manifest.jsonl"))
        || name.starts_with(".lethe-cert-")
        || name.starts_with(".lethe-manifest-")
        || name.starts_with(".lethe-probe-")
}

impl Store {
    /// Opens a configured store: a local folder (`file://`) behind its
    /// guard, or an S3, Azure or GCS client built from the environment and
    /// the store's options.
    pub fn open(config: &StoreConfig) -> Result<Self> {
        let url = &config.url;
        let open_err = |message: String| StoreError::Open {
            store: config.name.clone(),
            url: crate::config::redact_url(url),
            message,
        };
        let parsed = url::Url::parse(url).map_err(|e| open_err(e.to_string()))?;
        let client_options = cloud::client_options(&config.options);
        let (inner, entries, cloud): (Arc<dyn ObjectStore>, Arc<dyn Entries>, _) = match parsed
            .scheme()
        {
            "file" => {
                let root = parsed
                    .to_file_path()
                    .map_err(|_| open_err("not an absolute file path".into()))?;
                let guard = Arc::new(LocalGuard::new(&root).map_err(open_err)?);
                let mut inner: Arc<dyn ObjectStore> = guard.clone();
                if let Some(faults) = config.faults.as_deref().copied() {
                    tracing::warn!(
                        store = %config.name,
                        seed = faults.seed,
                        "[stores.inject_faults] is set: reads, checks and deletes in this folder fail on purpose (for testing only)"
                    );
                    // In front of the guard: a fault never gets past its checks.
                    inner = Arc::new(faults::FaultyStore::new(inner, faults).local());
                }
                (inner, guard, None)
            }
            _ => {
                let (mut inner, cloud, prefix) = cloud::open(config).map_err(open_err)?;
                // Listed key by exact key, past keys object_store cannot represent;
                // with injected faults, through the faulty client's listing.
                let mut entries: Arc<dyn Entries> = Arc::new(pages::Paged::new(
                    cloud.clone(),
                    &prefix,
                    client_options.clone(),
                    cloud::retry_config(&config.retry),
                ));
                if let Some(faults) = config.faults.as_deref().copied() {
                    tracing::warn!(
                        store = %config.name,
                        seed = faults.seed,
                        "[stores.inject_faults] is set: this store's client fails on purpose (for testing only)"
                    );
                    inner = Arc::new(faults::FaultyStore::new(inner, faults));
                    entries = Arc::new(Objects(inner.clone()));
                }
                (inner, entries, Some(cloud))
            }
        };
        let order = match &cloud {
            Some(cloud) => ListingOrder::cloud(cloud, config.listing_order),
            None => ListingOrder::local(config.listing_order),
        };
        let verification = match (config.verify, cloud.is_some()) {
            (Some(crate::config::VerifySetting::Head), _) | (_, false) => Verification::Head,
            (Some(crate::config::VerifySetting::Listing) | None, true) => Verification::Listing,
        };
        tracing::debug!(store = %config.name, order = order.as_str(), verification = verification.as_str(), "listing order relied on");
        Ok(Self {
            name: config.name.clone(),
            url: url.clone(),
            inner,
            entries,
            local: cloud.is_none(),
            cloud,
            client_options,
            order,
            verification,
            in_flight: Arc::new(Throttle::new(config.max_in_flight)),
            certificates_prefix: config.certificates_prefix.clone(),
        })
    }

    /// A store over any `ObjectStore` (tests, wrappers such as fault injection).
    pub fn from_object_store(name: &str, url: &str, inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            name: name.to_string(),
            url: url.to_string(),
            entries: Arc::new(Objects(inner.clone())),
            inner,
            cloud: None,
            local: false,
            client_options: object_store::ClientOptions::new(),
            order: ListingOrder::Unordered,
            verification: Verification::Head,
            in_flight: Arc::new(Throttle::new(DEFAULT_IN_FLIGHT)),
            certificates_prefix: None,
        }
    }

    /// Whether `key` is one of lethe's certificate files inside this store.
    fn is_lethe_file(&self, key: &str) -> bool {
        let Some(prefix) = &self.certificates_prefix else {
            return false;
        };
        key.strip_prefix(prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|name| !name.contains('/') && is_certificate_file(name))
    }

    /// Declares the order the wrapped store lists in (see [`Store::listing_order`]).
    pub fn with_listing_order(mut self, order: ListingOrder) -> Self {
        self.order = order;
        self
    }

    /// The order the listing yields keys in, so that the scan may infer a
    /// sidecar's absence from it and check that the listing keeps to it.
    /// Unknown stores (`from_object_store`) are not assumed to keep any.
    pub fn listing_order(&self) -> ListingOrder {
        self.order
    }

    /// The store, deleting at most `max` batches at once (see [`Throttle`]).
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.in_flight = Arc::new(Throttle::new(max));
        self
    }

    /// What bounds the batches deleting in this store at once.
    pub fn in_flight(&self) -> &Throttle {
        &self.in_flight
    }

    /// The typed cloud client, if this is a cloud store.
    pub fn cloud(&self) -> Option<&Cloud> {
        self.cloud.as_ref()
    }

    /// Declares lethe's own files: if they lie inside this store, they are
    /// reported, never read or deleted.
    pub fn protect(&mut self, paths: &[std::path::PathBuf]) {
        self.entries.protect(paths);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL without credentials, for logs and certificates.
    pub fn display_url(&self) -> String {
        crate::config::redact_url(&self.url)
    }

    /// Streams the whole store, entry by entry, with bounded memory. lethe's
    /// certificate files, where the destination lies inside the store, are
    /// left out: they are not the store's objects.
    pub fn list(&self) -> BoxStream<'static, Result<Listed>> {
        let listing = self.list_all();
        if self.certificates_prefix.is_none() {
            return listing;
        }
        let this = self.clone();
        listing
            .filter(move |entry| {
                let own = matches!(entry, Ok(Listed::Object(meta)) if this.is_lethe_file(meta.location.as_ref()));
                futures::future::ready(!own)
            })
            .boxed()
    }

    fn list_all(&self) -> BoxStream<'static, Result<Listed>> {
        let store = self.name.clone();
        self.entries
            .entries()
            .map(move |r| {
                r.map_err(|source| StoreError::List {
                    store: store.clone(),
                    source,
                })
            })
            .boxed()
    }

    /// The key as an object path; lethe's certificate files inside the
    /// store are refused, whatever asks for them.
    fn path(&self, key: &str) -> Result<ObjectPath> {
        if self.is_lethe_file(key) {
            return Err(StoreError::Refused {
                key: key.to_string(),
                reason:
                    "a certificate file of lethe's own: never read or deleted as a store object"
                        .into(),
            });
        }
        ObjectPath::parse(key).map_err(|e| StoreError::Refused {
            key: key.to_string(),
            reason: format!("not a valid object key: {e}"),
        })
    }

    /// The object's metadata, `None` if it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path(key)?;
        match self.inner.head(&path).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(object_error(key, source)),
        }
    }

    /// Reads a small object whole (a sidecar). `None` if it does not exist;
    /// an error if it is larger than `limit` bytes.
    pub async fn get_small(&self, key: &str, limit: u64) -> Result<Option<(ObjectMeta, Bytes)>> {
        let path = self.path(key)?;
        let result = match self.inner.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(object_error(key, source)),
        };
        let meta = result.meta.clone();
        if meta.size > limit {
            return Err(StoreError::Refused {
                key: key.to_string(),
                reason: format!(
                    "{} bytes is larger than the {limit}-byte limit for sidecars",
                    meta.size
                ),
            });
        }
        let bytes = result.bytes().await.map_err(|source| StoreError::Object {
            key: key.to_string(),
            source,
        })?;
        Ok(Some((meta, bytes)))
    }

    /// Deletes exactly `key`, as the listing returned it.
    pub async fn delete(&self, key: &str) -> Result<Deleted> {
        let path = self.path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) => Ok(Deleted::Deleted),
            Err(object_store::Error::NotFound { .. }) => Ok(Deleted::AlreadyAbsent),
            Err(source) => Err(object_error(key, source)),
        }
    }

    /// Writes a small object whole (a certificate).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(key)?;
        self.inner
            .put(&path, object_store::PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| StoreError::Object {
                key: key.to_string(),
                source,
            })
    }

    /// Creates a small object whole (a certificate), never replacing one:
    /// a conditional put (`PutMode::Create`: `If-None-Match: *` on S3 and
    /// Azure, generation 0 on GCS). `Exists` if the key is taken.
    ///
    /// A `head` comes first: fake-gcs-server (the GCS emulator of the test
    /// suite) ignores the generation precondition and would overwrite, so
    /// there the `head` is the only check (a writer creating the key between
    /// the two is not detected); moto, Azurite and the real services refuse
    /// the conditional put themselves.
    pub async fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<Written> {
        let path = self.path(key)?;
        if self.head(key).await?.is_some() {
            return Ok(Written::Exists);
        }
        let options = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(&path, object_store::PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(Written::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Written::Exists),
            Err(source) => Err(StoreError::Object {
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Creates an object from a local file, never replacing one. Up to
    /// [`CONDITIONAL_PUT_LIMIT`] bytes it is one conditional put; a larger
    /// file (a manifest of more than some 15,000 lines) goes up in parts,
    /// which object_store cannot make conditional, so it is checked with a
    /// `head` first: a writer that creates the key between the two is not
    /// detected.
    pub async fn put_file_new(&self, key: &str, file: &std::path::Path) -> Result<Written> {
        let err = |e: std::io::Error| StoreError::Refused {
            key: key.to_string(),
            reason: e.to_string(),
        };
        let size = tokio::fs::metadata(file).await.map_err(err)?.len();
        if size <= CONDITIONAL_PUT_LIMIT {
            let bytes = tokio::fs::read(file).await.map_err(err)?;
            return self.put_new(key, bytes).await;
        }
        if self.head(key).await?.is_some() {
            return Ok(Written::Exists);
        }
        self.put_file(key, file).await?;
        Ok(Written::Created)
    }

    /// Uploads a local file, streaming it (multipart when it is large: a
    /// manifest of a million lines).
    pub async fn put_file(&self, key: &str, file: &std::path::Path) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let path = self.path(key)?;
        let err = |e: std::io::Error| StoreError::Refused {
            key: key.to_string(),
            reason: e.to_string(),
        };
        let mut source = tokio::fs::File::open(file).await.map_err(err)?;
        let mut writer = object_store::buffered::BufWriter::new(self.inner.clone(), path);
        tokio::io::copy(&mut source, &mut writer)
            .await
            .map_err(err)?;
        writer.shutdown().await.map_err(err)
    }

    /// Downloads an object into a local file, streaming it. `false` if it does not exist.
    pub async fn get_to_file(&self, key: &str, file: &std::path::Path) -> Result<bool> {
        use tokio::io::AsyncWriteExt;
        let path = self.path(key)?;
        let result = match self.inner.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(source) => return Err(object_error(key, source)),
        };
        let err = |e: std::io::Error| StoreError::Refused {
            key: key.to_string(),
            reason: e.to_string(),
        };
        let mut out = tokio::fs::File::create(file).await.map_err(err)?;
        let mut chunks = result.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|source| StoreError::Object {
                key: key.to_string(),
                source,
            })?;
            out.write_all(&chunk).await.map_err(err)?;
        }
        out.flush().await.map_err(err)?;
        Ok(true)
    }

    /// Deletes many keys with the store's bulk API where it has one
    /// (`delete_stream`: S3 DeleteObjects of up to 1,000 keys, Azure blob
    /// batches, bounded concurrency elsewhere). Answers come back in the order
    /// of `keys`. A bulk request can fail as a whole without saying which keys
    /// it concerned: those keys are `Unanswered`, and the caller must find out
    /// with a `head` what became of them. An error that names one key (S3
    /// answers each key of a DeleteObjects with its own) is that key's alone.
    pub async fn delete_many(&self, keys: &[String]) -> Vec<DeleteAnswer> {
        let mut answers: Vec<DeleteAnswer> = vec![DeleteAnswer::Unanswered(None); keys.len()];
        let mut index: HashMap<String, VecDeque<usize>> = HashMap::new();
        let mut paths = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let path = match self.path(key) {
                Ok(p) => p,
                Err(e) => {
                    answers[i] = DeleteAnswer::Refused(e.to_string());
                    continue;
                }
            };
            index.entry(path.to_string()).or_default().push_back(i);
            paths.push(Ok(path));
        }
        if paths.is_empty() {
            return answers;
        }
        let mut results = self
            .inner
            .delete_stream(futures::stream::iter(paths).boxed());
        let mut unattributed: Vec<String> = Vec::new();
        while let Some(result) = results.next().await {
            match result {
                Ok(path) => {
                    if let Some(i) = index.get_mut(path.as_ref()).and_then(VecDeque::pop_front) {
                        answers[i] = DeleteAnswer::Deleted;
                    }
                }
                Err(object_store::Error::NotFound { path, source }) => {
                    match index.get_mut(path.as_str()).and_then(VecDeque::pop_front) {
                        Some(i) => answers[i] = DeleteAnswer::NotFound,
                        None => unattributed.push(format!("not found: {source}")),
                    }
                }
                Err(e) => match guard_error(&e) {
                    // A local guard's answer names its key exactly.
                    Some(refusal) => {
                        match index.get_mut(&refusal.path).and_then(VecDeque::pop_front) {
                            Some(i) => answers[i] = guard_answer(refusal),
                            None => unattributed.push(e.to_string()),
                        }
                    }
                    None => {
                        // A key's own error (S3 DeleteObjects answers each key
                        // with its own code and message) is that key's answer;
                        // only an error of the whole request goes to every key.
                        let text = e.to_string();
                        let key = key_named_in(&text, index.keys());
                        match key.and_then(|k| index.get_mut(&k)?.pop_front()) {
                            Some(i) => answers[i] = DeleteAnswer::Unanswered(Some(text)),
                            None => unattributed.push(text),
                        }
                    }
                },
            }
        }
        if let Some(first) = unattributed.first() {
            let context = if unattributed.len() > 1 {
                format!("{first} (and {} more errors)", unattributed.len() - 1)
            } else {
                first.clone()
            };
            for a in answers.iter_mut() {
                if let DeleteAnswer::Unanswered(None) = a {
                    *a = DeleteAnswer::Unanswered(Some(context.clone()));
                }
            }
        }
        answers
    }
}

/// The one key of a bulk delete an error message is about: the keys it names,
/// less those only named as part of a longer key it names (`a.wav` inside
/// `a.wav.json`); `None` when it names none or several (an error of a whole
/// request, which may list every key).
fn key_named_in<'a>(text: &str, keys: impl Iterator<Item = &'a String>) -> Option<String> {
    let named: Vec<&String> = keys.filter(|k| text.contains(k.as_str())).collect();
    let mut own = named.iter().filter(|k| {
        !named
            .iter()
            .any(|o| o.len() > k.len() && o.contains(k.as_str()))
    });
    match (own.next(), own.next()) {
        (Some(k), None) => Some((*k).clone()),
        _ => None,
    }
}

impl Store {
    /// Heads many keys, in the order given, `concurrency` requests at a
    /// time (a local folder's guard answers each from one `lstat`).
    pub async fn head_many(
        &self,
        keys: &[String],
        concurrency: usize,
    ) -> Vec<Result<Option<ObjectMeta>>> {
        futures::stream::iter(keys.iter().cloned())
            .map(|k| async move { self.head(&k).await })
            .buffered(concurrency.max(1))
            .collect()
            .await
    }
}

/// A bulk delete's answer for a key the local guard did not delete.
fn guard_answer(refusal: &GuardError) -> DeleteAnswer {
    match &refusal.error {
        LocalError::Refused(reason) => {
            DeleteAnswer::Refused(format!("{}: refused: {reason}", refusal.path))
        }
        LocalError::Io(e) => DeleteAnswer::Unanswered(Some(format!("{}: {e}", refusal.path))),
    }
}

/// An error of one request on `key`: the local guard's refusal as such,
/// anything else as the store's error.
fn object_error(key: &str, source: object_store::Error) -> StoreError {
    match guard_error(&source).map(|g| g.error.clone()) {
        Some(LocalError::Refused(reason)) => StoreError::Refused {
            key: key.to_string(),
            reason,
        },
        Some(LocalError::Io(message)) => StoreError::Object {
            key: key.to_string(),
            source: object_store::Error::Generic {
                store: "LocalFileSystem",
                source: message.into(),
            },
        },
        None => StoreError::Object {
            key: key.to_string(),
            source,
        },
    }
}

/// The side channel of a store's guard: what `ObjectStore` cannot carry.
/// `ObjectStore::list` yields objects only, but a local folder's walk also
/// reports the entries it cannot handle and the folders it lists unordered,
/// each in its place among the objects, and lethe's own files inside a
/// folder are declared after the store is opened.
pub trait Entries: Send + Sync + std::fmt::Debug {
    /// The whole listing, in the store's order.
    fn entries(
        &self,
    ) -> BoxStream<'static, std::result::Result<Listed, Box<dyn std::error::Error + Send + Sync>>>;
    /// Declares lethe's own files, to be reported and never read or deleted
    /// where they lie inside the store.
    fn protect(&self, paths: &[std::path::PathBuf]);
    /// The entries under `folder` (a key prefix ending in `/`, or `""`),
    /// from after `start_after` where the store can start there (a store
    /// may list from earlier); `None` if this listing cannot be asked for
    /// a range.
    fn range(&self, folder: &str, start_after: Option<&str>) -> Option<EntryStream> {
        let _ = (folder, start_after);
        None
    }
}

/// A listing as [`Entries`] yields it.
pub type EntryStream =
    BoxStream<'static, std::result::Result<Listed, Box<dyn std::error::Error + Send + Sync>>>;

impl Entries for LocalGuard {
    fn entries(
        &self,
    ) -> BoxStream<'static, std::result::Result<Listed, Box<dyn std::error::Error + Send + Sync>>>
    {
        LocalGuard::entries(self)
            .map(|r| r.map_err(Into::into))
            .boxed()
    }

    fn protect(&self, paths: &[std::path::PathBuf]) {
        LocalGuard::protect(self, paths);
    }
}

/// Any other store: its objects, as `ObjectStore::list` gives them. lethe's
/// own files never lie in it, but for its certificate files, which `Store`
/// hides by name.
#[derive(Debug)]
struct Objects(Arc<dyn ObjectStore>);

impl Entries for Objects {
    fn entries(
        &self,
    ) -> BoxStream<'static, std::result::Result<Listed, Box<dyn std::error::Error + Send + Sync>>>
    {
        self.0
            .list(None)
            .map(|r| r.map(Listed::Object).map_err(Into::into))
            .boxed()
    }

    fn protect(&self, _paths: &[std::path::PathBuf]) {}

    fn range(&self, folder: &str, start_after: Option<&str>) -> Option<EntryStream> {
        let prefix = ObjectPath::parse(folder.trim_end_matches('/')).ok()?;
        let prefix = (!folder.is_empty()).then_some(prefix);
        let offset = start_after.and_then(|o| ObjectPath::parse(o).ok());
        let listing = match offset {
            Some(offset) => self.0.list_with_offset(prefix.as_ref(), &offset),
            None => self.0.list(prefix.as_ref()),
        };
        Some(
            listing
                .map(|r| r.map(Listed::Object).map_err(Into::into))
                .boxed(),
        )
    }
}

/// The largest file [`Store::put_file_new`] sends as one conditional put.
pub const CONDITIONAL_PUT_LIMIT: u64 = 8 * 1024 * 1024;

/// What a create-new write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    /// The key was taken; nothing was written.
    Exists,
}

/// The store's answer for one key of a bulk delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteAnswer {
    /// The store confirmed the delete.
    Deleted,
    /// The store said there was nothing to delete.
    NotFound,
    /// lethe refused to send it (a link, a protected file, an invalid key).
    Refused(String),
    /// No answer for this key; the error of the request, if one came.
    Unanswered(Option<String>),
}
