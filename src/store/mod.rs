//! Recording stores: a URL becomes an `object_store` client behind a guard.
//!
//! Everything lethe does to a store goes through [`Store`]: list, read a
//! sidecar, check presence, delete. The guard is where store-specific safety
//! lives. For local folders it refuses to follow symbolic links out of the
//! root, reports every file whose name the storage layer cannot represent
//! (rather than skipping it silently, as `LocalFileSystem` would), and checks
//! before each delete that the path still lies inside the root and is not a
//! link. The store never decides anything: it answers and it deletes.

mod local;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

pub use local::LocalGuard;

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
    Problem { name: String, reason: String },
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

/// How deleted objects disappear from a store, as certificates state it.
pub const DELETION_MODE_PERMANENT: &str = "permanent";

#[derive(Debug, Clone)]
pub struct Store {
    name: String,
    url: String,
    inner: Arc<dyn ObjectStore>,
    local: Option<LocalGuard>,
}

impl Store {
    /// Opens the store at `url` (today: `file://` folders).
    pub fn open(name: &str, url: &str) -> Result<Self> {
        let open_err = |message: String| StoreError::Open {
            store: name.to_string(),
            url: crate::config::redact_url(url),
            message,
        };
        let parsed = url::Url::parse(url).map_err(|e| open_err(e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let root = parsed
                    .to_file_path()
                    .map_err(|_| open_err("not an absolute file path".into()))?;
                let guard = LocalGuard::new(&root).map_err(open_err)?;
                Ok(Self {
                    name: name.to_string(),
                    url: url.to_string(),
                    inner: guard.object_store(),
                    local: Some(guard),
                })
            }
            other => Err(open_err(format!("unsupported scheme {other}://"))),
        }
    }

    /// A store over any `ObjectStore` (tests, wrappers).
    pub fn from_object_store(name: &str, url: &str, inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            name: name.to_string(),
            url: url.to_string(),
            inner,
            local: None,
        }
    }

    /// Declares lethe's own files: if they lie inside this store, they are
    /// reported, never read or deleted.
    pub fn protect(&mut self, paths: &[std::path::PathBuf]) {
        if let Some(local) = &mut self.local {
            local.protect(paths);
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL without credentials, for logs and certificates.
    pub fn display_url(&self) -> String {
        crate::config::redact_url(&self.url)
    }

    pub fn deletion_mode(&self) -> &'static str {
        DELETION_MODE_PERMANENT
    }

    /// Streams the whole store, entry by entry, with bounded memory.
    pub fn list(&self) -> BoxStream<'static, Result<Listed>> {
        if let Some(local) = &self.local {
            let store = self.name.clone();
            return local
                .list()
                .map(move |r| {
                    r.map_err(|source| StoreError::List {
                        store: store.clone(),
                        source: source.into(),
                    })
                })
                .boxed();
        }
        let store = self.name.clone();
        self.inner
            .list(None)
            .map(move |r| {
                r.map(Listed::Object).map_err(|e| StoreError::List {
                    store: store.clone(),
                    source: Box::new(e),
                })
            })
            .boxed()
    }

    fn path(&self, key: &str) -> Result<ObjectPath> {
        ObjectPath::parse(key).map_err(|e| StoreError::Refused {
            key: key.to_string(),
            reason: format!("not a valid object key: {e}"),
        })
    }

    /// The object's metadata, `None` if it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path(key)?;
        if let Some(local) = &self.local {
            local.check(&path).map_err(|reason| StoreError::Refused {
                key: key.to_string(),
                reason,
            })?;
        }
        match self.inner.head(&path).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(StoreError::Object {
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Reads a small object whole (a sidecar). `None` if it does not exist;
    /// an error if it is larger than `limit` bytes.
    pub async fn get_small(&self, key: &str, limit: u64) -> Result<Option<(ObjectMeta, Bytes)>> {
        let path = self.path(key)?;
        if let Some(local) = &self.local {
            local.check(&path).map_err(|reason| StoreError::Refused {
                key: key.to_string(),
                reason,
            })?;
        }
        let result = match self.inner.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => {
                return Err(StoreError::Object {
                    key: key.to_string(),
                    source,
                });
            }
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
        if let Some(local) = &self.local {
            local.check(&path).map_err(|reason| StoreError::Refused {
                key: key.to_string(),
                reason,
            })?;
        }
        match self.inner.delete(&path).await {
            Ok(()) => Ok(Deleted::Deleted),
            Err(object_store::Error::NotFound { .. }) => Ok(Deleted::AlreadyAbsent),
            Err(source) => Err(StoreError::Object {
                key: key.to_string(),
                source,
            }),
        }
    }
}
