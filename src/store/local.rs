//! The guard around a local folder: an `ObjectStore` composed in front of
//! `LocalFileSystem`.
//!
//! `object_store`'s `LocalFileSystem` follows symbolic links while listing
//! (also out of its root), silently skips names it cannot represent (such as
//! `x#1`), and ends a listing at the first non-UTF-8 name. For an erasure tool
//! each of these is a hazard, so [`LocalGuard`] wraps it, the way
//! `FaultyStore` wraps a cloud client, and does its checks inside the trait
//! methods: reads and deletes reach `LocalFileSystem` (or the file system)
//! only after [`LocalGuard::check`] has confirmed that the path is a regular
//! file inside the root and not one of lethe's own files; a refusal comes
//! back as an `object_store::Error` whose source is a typed [`GuardError`]
//! (see [`guard_error`]), so that `Store` can report it as a refusal rather
//! than a store failure. A bulk delete (`delete_stream`) checks and unlinks
//! its files on a few blocking threads, and a `head` answers from one `lstat`.
//! Listing is lethe's own walk: it never follows a link, lists each folder in
//! name order (up to [`SORT_LIMIT`] entries; a larger one is streamed
//! unsorted and announced as such), and turns every entry it cannot address
//! exactly into a reported problem. `ObjectStore::list` can carry only
//! objects, so the problems and the "unordered" notices, which must keep
//! their place among the objects, travel through one small typed side
//! channel: [`LocalGuard::entries`] yields the whole walk as [`Listed`]
//! entries (`Store` reaches it through its `Entries` trait, along with
//! [`LocalGuard::protect`], which declares lethe's own files after the store
//! is opened); `ObjectStore::list` yields the objects of the same walk only.
//! Writes pass straight through: lethe never writes into a local store (a
//! certificate folder is written by `certify` itself).

use std::ffi::OsString;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::{Listed, ProblemKind};

/// Threads a batch of local deletions is spread over.
const DELETE_THREADS: usize = 4;

/// Paths of a `delete_stream` checked and unlinked together, so that a
/// stream of any length is deleted with bounded memory.
const DELETE_BATCH: usize = 1000;

/// Entries buffered between the walking thread and the async consumer.
const CHANNEL_CAPACITY: usize = 1024;
/// Entries the walk hands over at a time: a hand-over per entry would wake
/// a thread per file (a tenth of a local run's CPU time was those wake-ups).
const WALK_CHUNK: usize = 256;

/// The `store` named in the `object_store::Error`s the guard makes itself.
const STORE: &str = "LocalGuard";

#[derive(Debug, Clone)]
pub struct LocalGuard {
    root: PathBuf,
    fs: Arc<LocalFileSystem>,
    /// lethe's own files and folders (config, policies, key, ledger,
    /// certificates) when they live inside the store: never listed as
    /// objects, never read or deleted. Behind a lock because they are
    /// declared after the store is opened, when `Store` already shares the
    /// guard; each check and each walk takes a snapshot.
    protected: Arc<RwLock<Arc<Vec<PathBuf>>>>,
}

const PROTECTED: &str =
    "lethe's own file (config, policy, key, ledger or certificates): never touched";

fn is_protected(protected: &[PathBuf], path: &Path) -> bool {
    protected.iter().any(|p| path.starts_with(p))
}

/// Why the guard did not carry out a request on one path: the source of the
/// `object_store::Error::Generic` it answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {error}")]
pub struct GuardError {
    /// The object key, as the request named it.
    pub path: String,
    pub error: LocalError,
}

/// Why an operation on a local file did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// The guard refused (a link, not a regular file, outside the root, lethe's own).
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
}

impl GuardError {
    fn into_object_store(self) -> object_store::Error {
        object_store::Error::Generic {
            store: STORE,
            source: Box::new(self),
        }
    }
}

/// The guard's own reason, if `error` is one of its answers.
pub fn guard_error(error: &object_store::Error) -> Option<&GuardError> {
    match error {
        object_store::Error::Generic { store, source } if *store == STORE => source.downcast_ref(),
        _ => None,
    }
}

fn refused(location: &ObjectPath, reason: String) -> object_store::Error {
    GuardError {
        path: location.to_string(),
        error: LocalError::Refused(reason),
    }
    .into_object_store()
}

impl LocalGuard {
    pub fn new(root: &Path) -> Result<Self, String> {
        let canonical =
            std::fs::canonicalize(root).map_err(|e| format!("{}: {e}", root.display()))?;
        if !canonical.is_dir() {
            return Err(format!("{} is not a folder", root.display()));
        }
        let fs = LocalFileSystem::new_with_prefix(&canonical).map_err(|e| e.to_string())?;
        Ok(Self {
            root: canonical,
            fs: Arc::new(fs),
            protected: Arc::new(RwLock::new(Arc::new(Vec::new()))),
        })
    }

    /// Marks paths as lethe's own, replacing those marked before. Paths that
    /// do not exist yet (a ledger's `-wal` file) are resolved through their
    /// folder.
    pub fn protect(&self, paths: &[PathBuf]) {
        let resolved = paths
            .iter()
            .filter_map(|p| {
                std::fs::canonicalize(p).ok().or_else(|| {
                    let dir = std::fs::canonicalize(p.parent()?).ok()?;
                    Some(dir.join(p.file_name()?))
                })
            })
            .filter(|p| p.starts_with(&self.root))
            .collect();
        // A poisoned lock only means a writer panicked mid-assignment of an
        // `Arc`, which cannot leave it half-written: its value is still whole.
        *self
            .protected
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(resolved);
    }

    /// lethe's own paths as declared now.
    fn protected(&self) -> Arc<Vec<PathBuf>> {
        self.protected
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Walks the folder on a blocking thread and streams its entries: the
    /// typed side channel of the listing. A folder of up to [`SORT_LIMIT`]
    /// entries is listed in name order; a larger one is announced with
    /// [`Listed::Unordered`] and its files streamed in the order the file
    /// system yields them, then its subfolders walked. Memory is bounded by
    /// the channel and by [`SORT_LIMIT`] entries per folder level, whatever
    /// the store's size.
    pub fn entries(&self) -> BoxStream<'static, std::io::Result<Listed>> {
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_CAPACITY / WALK_CHUNK);
        let walker = Walker {
            root: self.root.clone(),
            fs: self.fs.clone(),
            protected: self.protected(),
            tx,
            chunk: std::cell::RefCell::new(Vec::with_capacity(WALK_CHUNK)),
        };
        tokio::task::spawn_blocking(move || walker.walk());
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        })
        .flat_map(futures::stream::iter)
        .boxed()
    }

    /// Refuses to touch anything but a regular file inside the root. A path
    /// that does not exist passes: the store will answer "not found".
    pub fn check(&self, path: &ObjectPath) -> Result<(), String> {
        self.inspect(path, &mut Folders::default()).map(|_| ())
    }

    /// [`check`](Self::check), returning the file's path and metadata (`None`:
    /// it does not exist). `folders` remembers, for one batch, which folders
    /// were found to resolve inside the root.
    fn inspect(
        &self,
        path: &ObjectPath,
        folders: &mut Folders,
    ) -> Result<(PathBuf, Option<std::fs::Metadata>), String> {
        let fs_path = to_filesystem(&self.root, &self.fs, path).map_err(|e| e.to_string())?;
        if is_protected(&self.protected(), &fs_path) {
            return Err(PROTECTED.into());
        }
        let meta = match std::fs::symlink_metadata(&fs_path) {
            Ok(m) => m,
            Err(_) => return Ok((fs_path, None)),
        };
        if meta.file_type().is_symlink() {
            return Err("it is a symbolic link; lethe never follows or deletes links".into());
        }
        if !meta.is_file() {
            return Err("it is not a regular file".into());
        }
        let parent = fs_path.parent().ok_or("it has no parent folder")?;
        if !folders.inside.contains(parent) {
            let resolved = std::fs::canonicalize(parent)
                .map_err(|e| format!("cannot resolve its folder: {e}"))?;
            if !resolved.starts_with(&self.root) {
                return Err(format!(
                    "its folder resolves to {}, outside the store root",
                    resolved.display()
                ));
            }
            folders.inside.insert(parent.to_path_buf());
        }
        Ok((fs_path, Some(meta)))
    }

    /// [`check`](Self::check) as an `object_store` answer.
    fn guard(&self, location: &ObjectPath) -> object_store::Result<()> {
        self.check(location)
            .map_err(|reason| refused(location, reason))
    }

    /// Deletes many files on a few blocking threads, each after the same
    /// checks as [`check`](Self::check). Results in the order of `paths`:
    /// `true` deleted, `false` not there.
    async fn delete_batch(&self, paths: Vec<ObjectPath>) -> Vec<Result<bool, LocalError>> {
        // A few threads at once: an unlink mostly waits for the file system,
        // and waits overlap.
        let per_thread = paths.len().div_ceil(DELETE_THREADS).max(1);
        let mut chunks = Vec::new();
        let mut rest = paths.into_iter().peekable();
        while rest.peek().is_some() {
            chunks.push(rest.by_ref().take(per_thread).collect::<Vec<_>>());
        }
        let tasks: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let guard = self.clone();
                let n = chunk.len();
                (
                    n,
                    tokio::task::spawn_blocking(move || {
                        let mut folders = Folders::default();
                        chunk
                            .into_iter()
                            .map(|path| guard.delete_one(&path, &mut folders))
                            .collect::<Vec<_>>()
                    }),
                )
            })
            .collect();
        let mut out = Vec::new();
        for (n, task) in tasks {
            match task.await {
                Ok(results) => out.extend(results),
                Err(e) => out.extend((0..n).map(|_| Err(LocalError::Io(e.to_string())))),
            }
        }
        out
    }

    fn delete_one(&self, path: &ObjectPath, folders: &mut Folders) -> Result<bool, LocalError> {
        match self.inspect(path, folders) {
            Err(reason) => Err(LocalError::Refused(reason)),
            Ok((_, None)) => Ok(false),
            Ok((fs_path, Some(_))) => match std::fs::remove_file(&fs_path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(LocalError::Io(format!("cannot delete: {e}"))),
            },
        }
    }

    /// A `head`: the checked file's `lstat`, as `LocalFileSystem` would
    /// describe it. It runs where it is called, like the check before any
    /// read: a thread hop per object would cost more than the `lstat`
    /// itself, and the bulk lookups of a run ask for thousands.
    fn head_now(
        &self,
        location: &ObjectPath,
        options: &GetOptions,
    ) -> object_store::Result<GetResult> {
        let meta = match self.inspect(location, &mut Folders::default()) {
            Err(reason) => return Err(refused(location, reason)),
            Ok((_, None)) => {
                return Err(object_store::Error::NotFound {
                    path: location.to_string(),
                    source: "no such file".into(),
                });
            }
            Ok((_, Some(meta))) => object_meta(location.clone(), &meta),
        };
        options.check_preconditions(&meta)?;
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
            range: 0..meta.size,
            meta,
            attributes: Default::default(),
            extensions: Default::default(),
        })
    }

    /// One level of the walk under `prefix`: its subfolders and the objects
    /// among its files (links, and names that cannot be keys, left out).
    fn list_one_level(&self, prefix: Option<&ObjectPath>) -> object_store::Result<ListResult> {
        let io = |e: std::io::Error| object_store::Error::Generic {
            store: STORE,
            source: Box::new(e),
        };
        let dir = match prefix {
            Some(p) if !p.as_ref().is_empty() => to_filesystem(&self.root, &self.fs, p)?,
            _ => self.root.clone(),
        };
        let protected = self.protected();
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(result),
            Err(e) => return Err(io(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io)?;
            let (path, file_type) = (entry.path(), entry.file_type().map_err(io)?);
            if is_protected(&protected, &path) {
                continue;
            }
            if file_type.is_dir() {
                if let Ok(key) = ObjectPath::parse(relative_key(&self.root, &path)) {
                    result.common_prefixes.push(key);
                }
            } else if let Listed::Object(meta) =
                classify_entry(&self.root, &self.fs, &path, file_type)
            {
                result.objects.push(meta);
            }
        }
        result.common_prefixes.sort();
        result.objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(result)
    }
}

impl std::fmt::Display for LocalGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalGuard({})", self.root.display())
    }
}

#[async_trait]
impl ObjectStore for LocalGuard {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.fs.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.fs.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head && options.range.is_none() {
            return self.head_now(location, &options);
        }
        self.guard(location)?;
        self.fs.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.guard(location)?;
        self.fs.get_ranges(location, ranges).await
    }

    /// Checks and unlinks the files in batches of [`DELETE_BATCH`], each on
    /// a few blocking threads; answers come in the order of `locations`. A
    /// file that is not there is `NotFound`; a refusal or a failed unlink is
    /// a [`GuardError`] naming its key.
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        let guard = self.clone();
        locations
            .chunks(DELETE_BATCH)
            .then(move |batch| {
                let guard = guard.clone();
                async move { guard.delete_answers(batch).await }
            })
            .flat_map(futures::stream::iter)
            .boxed()
    }

    /// The objects of the walk that [`LocalGuard::entries`] streams, under
    /// `prefix`; its problems and order notices have no place here.
    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let prefix = prefix.cloned();
        self.entries()
            .filter_map(move |entry| {
                let item = match entry {
                    Ok(Listed::Object(meta))
                        if prefix
                            .as_ref()
                            .is_none_or(|p| meta.location.prefix_matches(p)) =>
                    {
                        Some(Ok(meta))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(object_store::Error::Generic {
                        store: STORE,
                        source: Box::new(e),
                    })),
                };
                futures::future::ready(item)
            })
            .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        let guard = self.clone();
        let prefix = prefix.cloned();
        tokio::task::spawn_blocking(move || guard.list_one_level(prefix.as_ref()))
            .await
            .map_err(|e| object_store::Error::JoinError { source: e })?
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.guard(from)?;
        self.guard(to)?;
        self.fs.copy_opts(from, to, options).await
    }
}

impl LocalGuard {
    /// One batch of `delete_stream`: the answers to `batch`, in its order.
    async fn delete_answers(
        &self,
        batch: Vec<object_store::Result<ObjectPath>>,
    ) -> Vec<object_store::Result<ObjectPath>> {
        let paths: Vec<ObjectPath> = batch
            .iter()
            .filter_map(|p| p.as_ref().ok().cloned())
            .collect();
        let mut results = self.delete_batch(paths).await.into_iter();
        batch
            .into_iter()
            .map(|item| {
                let path = item?;
                match results.next() {
                    Some(Ok(true)) => Ok(path),
                    Some(Ok(false)) => Err(object_store::Error::NotFound {
                        path: path.to_string(),
                        source: "no such file".into(),
                    }),
                    Some(Err(error)) => Err(GuardError {
                        path: path.to_string(),
                        error,
                    }
                    .into_object_store()),
                    None => Err(GuardError {
                        path: path.to_string(),
                        error: LocalError::Io("no answer from the deleting thread".into()),
                    }
                    .into_object_store()),
                }
            })
            .collect()
    }
}

/// A folder with more entries than this is not sorted in memory: its files
/// are streamed as the file system yields them (see [`Listed::Unordered`]).
pub const SORT_LIMIT: usize = 50_000;

/// One folder entry: its name and type (from the directory, links not followed).
type Entry = (OsString, std::fs::FileType);

/// The walk's state: a stack of folders being listed, innermost last.
struct Walker {
    root: PathBuf,
    fs: Arc<LocalFileSystem>,
    protected: Arc<Vec<PathBuf>>,
    tx: tokio::sync::mpsc::Sender<Vec<std::io::Result<Listed>>>,
    /// Entries not yet handed over.
    chunk: std::cell::RefCell<Vec<std::io::Result<Listed>>>,
}

enum Frame {
    /// A folder read whole: its entries still to visit, in name order.
    Sorted {
        dir: PathBuf,
        entries: std::vec::IntoIter<Entry>,
    },
    /// A large folder, first pass: its files, the ones read while counting,
    /// then the rest as the directory yields them. Subfolders are skipped.
    Files {
        dir: PathBuf,
        read: std::vec::IntoIter<Entry>,
        rest: std::fs::ReadDir,
    },
    /// A large folder, second pass: its subfolders, read afresh.
    Subfolders {
        dir: PathBuf,
        rest: std::fs::ReadDir,
    },
}

/// The consumer has gone (or the listing failed): stop walking.
struct Stop;

impl Walker {
    /// Queues an entry, handing the queue over when it is full; an error
    /// is handed over at once and ends the walk.
    fn send(&self, item: std::io::Result<Listed>) -> Result<(), Stop> {
        let fatal = item.is_err();
        let full = {
            let mut chunk = self.chunk.borrow_mut();
            chunk.push(item);
            chunk.len() >= WALK_CHUNK
        };
        if fatal || full {
            self.hand_over()?;
        }
        if fatal { Err(Stop) } else { Ok(()) }
    }

    fn hand_over(&self) -> Result<(), Stop> {
        let chunk = self.chunk.replace(Vec::with_capacity(WALK_CHUNK));
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx.blocking_send(chunk).map_err(|_| Stop)
    }

    fn problem(&self, path: &Path, reason: String) -> Result<(), Stop> {
        self.send(Ok(Listed::Problem {
            name: display_relative(&self.root, path),
            reason,
            kind: ProblemKind::Unreadable,
        }))
    }

    fn walk(self) {
        if self.walk_from_root().is_ok() {
            let _ = self.hand_over();
        }
    }

    fn walk_from_root(&self) -> Result<(), Stop> {
        let mut stack = Vec::new();
        match std::fs::read_dir(&self.root) {
            Ok(rest) => stack.push(self.open(self.root.clone(), rest)?),
            Err(e) => {
                let error = std::io::Error::new(e.kind(), format!("{}: {e}", self.root.display()));
                return self.send(Err(error));
            }
        }
        while let Some(top) = stack.last_mut() {
            let next = match top {
                Frame::Sorted { dir, entries } => entries.next().map(|(n, t)| Ok((dir.join(n), t))),
                Frame::Files { dir, read, rest } => read
                    .next()
                    .map(|(n, t)| Ok((dir.join(n), t)))
                    .or_else(|| next_entry(dir, rest, Only::Files)),
                Frame::Subfolders { dir, rest } => next_entry(dir, rest, Only::Folders),
            };
            match next {
                None => {
                    // A large folder's files are done: its subfolders next.
                    if let Some(Frame::Files { dir, .. }) = stack.pop() {
                        match std::fs::read_dir(&dir) {
                            Ok(rest) => stack.push(Frame::Subfolders { dir, rest }),
                            Err(e) => self.problem(&dir, format!("cannot be read: {e}"))?,
                        }
                    }
                }
                Some(Err((path, e))) => self.problem(&path, format!("cannot be read: {e}"))?,
                Some(Ok((path, file_type))) => self.visit(&mut stack, path, file_type)?,
            }
        }
        Ok(())
    }

    fn visit(
        &self,
        stack: &mut Vec<Frame>,
        path: PathBuf,
        file_type: std::fs::FileType,
    ) -> Result<(), Stop> {
        if is_protected(&self.protected, &path) {
            return self.problem(&path, PROTECTED.into());
        }
        if file_type.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(rest) => {
                    let frame = self.open(path, rest)?;
                    stack.push(frame);
                    Ok(())
                }
                Err(e) => self.problem(&path, format!("cannot be read: {e}")),
            }
        } else {
            let item = classify_entry(&self.root, &self.fs, &path, file_type);
            self.send(Ok(item))
        }
    }

    /// Reads a folder: whole and sorted if it is small, else announces it as
    /// unordered and keeps what was read for the first pass over its files.
    fn open(&self, dir: PathBuf, mut rest: std::fs::ReadDir) -> Result<Frame, Stop> {
        let mut read = Vec::new();
        while read.len() <= SORT_LIMIT {
            match next_entry(&dir, &mut rest, Only::All) {
                None => {
                    read.sort_unstable_by(|a: &Entry, b: &Entry| {
                        a.0.as_bytes().cmp(b.0.as_bytes())
                    });
                    return Ok(Frame::Sorted {
                        dir,
                        entries: read.into_iter(),
                    });
                }
                Some(Ok((path, file_type))) => {
                    let name = path.file_name().map(OsString::from).unwrap_or_default();
                    read.push((name, file_type));
                }
                Some(Err((path, e))) => self.problem(&path, format!("cannot be read: {e}"))?,
            }
        }
        self.send(Ok(Listed::Unordered {
            folder: relative_key(&self.root, &dir),
        }))?;
        read.retain(|(_, t)| !t.is_dir());
        Ok(Frame::Files {
            dir,
            read: read.into_iter(),
            rest,
        })
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Only {
    All,
    Files,
    /// Second pass: an entry whose type cannot be read was reported by the first.
    Folders,
}

type NextEntry = Option<Result<(PathBuf, std::fs::FileType), (PathBuf, std::io::Error)>>;

/// The next entry of `rest` that `only` asks for. An entry that cannot be
/// read is returned as an error with its path (the folder's, when the
/// directory itself fails).
fn next_entry(dir: &Path, rest: &mut std::fs::ReadDir, only: Only) -> NextEntry {
    loop {
        let entry = match rest.next()? {
            Ok(entry) => entry,
            Err(e) => return Some(Err((dir.to_path_buf(), e))),
        };
        let path = entry.path();
        match (entry.file_type(), only) {
            (Ok(t), Only::All) => return Some(Ok((path, t))),
            (Ok(t), Only::Files) if !t.is_dir() => return Some(Ok((path, t))),
            (Ok(t), Only::Folders) if t.is_dir() => return Some(Ok((path, t))),
            (Ok(_), _) | (Err(_), Only::Folders) => continue,
            (Err(e), _) => return Some(Err((path, e))),
        }
    }
}

/// A folder's path inside the root as the prefix of its objects' keys.
fn relative_key(root: &Path, dir: &Path) -> String {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The file `LocalFileSystem` reads for `location`: what its
/// `path_to_filesystem` answers, without its URL round trip for the common
/// key (printable ASCII without a backslash, `%` or `#`), where that round trip is
/// the identity. It cost more than the `lstat` it precedes.
fn to_filesystem(
    root: &Path,
    fs: &LocalFileSystem,
    location: &ObjectPath,
) -> object_store::Result<PathBuf> {
    let key = location.as_ref();
    let plain = |b: &u8| matches!(b, b' '..=b'~') && !matches!(b, b'\\' | b'%' | b'#');
    if !key.is_empty() && key.as_bytes().iter().all(plain) {
        Ok(root.join(key))
    } else {
        fs.path_to_filesystem(location)
    }
}

/// Folders of one batch already found to resolve inside the root.
#[derive(Default)]
struct Folders {
    inside: std::collections::HashSet<PathBuf>,
}

/// What `LocalFileSystem::head` would say of a file: the same e-tag scheme.
fn object_meta(location: ObjectPath, meta: &std::fs::Metadata) -> ObjectMeta {
    use std::os::unix::fs::MetadataExt;
    let modified = meta.modified().ok();
    let micros = modified
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    ObjectMeta {
        location,
        last_modified: modified.map(DateTime::<Utc>::from).unwrap_or_default(),
        size: meta.len(),
        e_tag: Some(format!("\"{:x}-{micros:x}-{:x}\"", meta.ino(), meta.len())),
        version: None,
    }
}

fn display_relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.as_os_str().as_bytes().escape_ascii().to_string()
}

fn classify_entry(
    root: &Path,
    fs: &LocalFileSystem,
    path: &Path,
    file_type: std::fs::FileType,
) -> Listed {
    let name = || display_relative(root, path);
    let problem = |reason: &str| Listed::Problem {
        name: name(),
        reason: reason.to_string(),
        kind: ProblemKind::Unreadable,
    };
    let unrepresentable = |reason: &str| Listed::Problem {
        name: name(),
        reason: reason.to_string(),
        kind: ProblemKind::Unrepresentable,
    };
    if file_type.is_symlink() {
        return problem(
            "symbolic link: not followed (lethe only handles regular files inside the store root)",
        );
    }
    if !file_type.is_file() {
        return problem("not a regular file (device, socket or pipe)");
    }
    let Ok(rel) = path.strip_prefix(root) else {
        return problem("outside the store root");
    };
    let mut parts = Vec::new();
    for component in rel.components() {
        match component.as_os_str().to_str() {
            Some(s) => parts.push(s),
            None => {
                return unrepresentable("the name is not valid UTF-8, which object keys require");
            }
        }
    }
    let key = parts.join("/");
    let location = match ObjectPath::parse(&key) {
        Ok(p) => p,
        Err(e) => {
            return unrepresentable(&format!(
                "the name cannot be represented as an object key: {e}"
            ));
        }
    };
    // Only an exact round trip guarantees that deleting this key deletes this file.
    match to_filesystem(root, fs, &location) {
        Ok(back) if back == path => {}
        Ok(_) | Err(_) => {
            return unrepresentable(
                "the storage layer cannot address this name exactly (it would map to another path)",
            );
        }
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return problem(&format!("cannot read its metadata: {e}")),
    };
    let modified = match meta.modified() {
        Ok(t) => DateTime::<Utc>::from(t),
        Err(e) => return problem(&format!("cannot read its modification time: {e}")),
    };
    Listed::Object(ObjectMeta {
        location,
        last_modified: modified,
        size: meta.len(),
        e_tag: None,
        version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_short_path_to_a_file_is_the_one_local_file_system_takes() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let fs = LocalFileSystem::new_with_prefix(&root).unwrap();
        // Every printable ASCII character, in every position of a segment.
        let mut keys: Vec<String> = (b' '..=b'~')
            .filter(|&c| c != b'/')
            .flat_map(|c| {
                let c = c as char;
                [
                    format!("a{c}b/x.wav"),
                    format!("{c}/{c}{c}"),
                    format!("d/{c}"),
                    format!("{c}x/y{c}"),
                ]
            })
            .collect();
        keys.extend(
            [
                "calls/quality/2026/01/02/call-1.wav",
                "a b/c d",
                "x#1",
                "x#y",
                "%41/b",
            ]
            .map(String::from),
        );
        let mut short = 0;
        for key in &keys {
            let Ok(location) = ObjectPath::parse(key) else {
                continue;
            };
            let expected = fs.path_to_filesystem(&location).map_err(|e| e.to_string());
            let got = to_filesystem(&root, &fs, &location).map_err(|e| e.to_string());
            assert_eq!(got, expected, "{key:?}");
            short += usize::from(root.join(key) == got.clone().unwrap_or_default());
        }
        assert!(short > 300, "most keys take the short path: {short}");
    }

    /// A folder with a file `a.wav`, a link `link.wav` to it, and `x#1`
    /// (a name `LocalFileSystem` cannot represent); the guard over it.
    fn folder() -> (tempfile::TempDir, LocalGuard) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wav"), b"audio").unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.wav"), dir.path().join("link.wav")).unwrap();
        std::fs::write(dir.path().join("x#1"), b"odd").unwrap();
        let guard = LocalGuard::new(dir.path()).unwrap();
        (dir, guard)
    }

    #[tokio::test]
    async fn a_head_through_the_guard_is_what_local_file_system_says_and_refuses_links_and_own_files()
     {
        use object_store::ObjectStoreExt;
        let (dir, guard) = folder();
        let key = ObjectPath::from("a.wav");
        assert_eq!(
            guard.head(&key).await.unwrap(),
            guard.fs.head(&key).await.unwrap()
        );
        let absent = guard.head(&ObjectPath::from("b.wav")).await.unwrap_err();
        assert!(
            matches!(absent, object_store::Error::NotFound { .. }),
            "{absent}"
        );
        let link = guard.head(&ObjectPath::from("link.wav")).await.unwrap_err();
        let refusal = guard_error(&link).expect("a refusal of the guard's own");
        assert_eq!(refusal.path, "link.wav");
        assert!(matches!(&refusal.error, LocalError::Refused(r) if r.contains("symbolic link")));
        guard.protect(&[dir.path().join("a.wav")]);
        let own = guard.get(&key).await.unwrap_err();
        assert!(
            matches!(guard_error(&own).map(|g| &g.error), Some(LocalError::Refused(r)) if r == PROTECTED)
        );
    }

    #[tokio::test]
    async fn a_bulk_delete_through_the_guard_answers_each_key_in_order() {
        let (dir, guard) = folder();
        let keys = ["link.wav", "a.wav", "gone.wav"].map(ObjectPath::from);
        let answers: Vec<_> = guard
            .delete_stream(futures::stream::iter(keys.clone().map(Ok)).boxed())
            .collect()
            .await;
        let refusal = guard_error(answers[0].as_ref().unwrap_err()).unwrap();
        assert_eq!(refusal.path, "link.wav");
        assert_eq!(answers[1].as_ref().unwrap(), &keys[1]);
        assert!(matches!(
            answers[2],
            Err(object_store::Error::NotFound { .. })
        ));
        assert!(!dir.path().join("a.wav").exists());
        assert!(
            dir.path().join("link.wav").symlink_metadata().is_ok(),
            "the link stays"
        );
    }

    #[tokio::test]
    async fn a_folder_that_vanishes_mid_walk_is_reported_and_the_walk_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        // More files before `m/` than the walk hands over ahead of its
        // consumer (the channel, the chunk being sent, the chunk being
        // read): the walk waits there until the test has removed `m/`, then
        // finds it gone.
        let first = CHANNEL_CAPACITY + 2 * WALK_CHUNK + 200;
        for i in 0..first {
            std::fs::create_dir_all(root.join("a")).unwrap();
            std::fs::write(root.join(format!("a/{i:05}.wav")), "x").unwrap();
        }
        std::fs::create_dir_all(root.join("m/n")).unwrap();
        std::fs::write(root.join("m/n/gone.wav"), "x").unwrap();
        std::fs::create_dir_all(root.join("z")).unwrap();
        std::fs::write(root.join("z/last.wav"), "x").unwrap();
        let guard = LocalGuard::new(&root).unwrap();
        let mut entries = guard.entries();
        let head = entries.next().await.unwrap().unwrap();
        assert!(matches!(head, Listed::Object(_)));
        std::fs::remove_dir_all(root.join("m")).unwrap();
        let rest: Vec<_> = entries.collect().await;
        let (mut objects, mut problems) = (1, Vec::new());
        for e in rest {
            match e.expect("a vanished folder is no listing error") {
                Listed::Object(_) => objects += 1,
                Listed::Problem { name, reason, .. } => problems.push(format!("{name}: {reason}")),
                Listed::Unordered { .. } => {}
            }
        }
        assert_eq!(objects, first + 1, "a/ whole and z/last.wav");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("m: cannot be read"), "{problems:?}");
    }

    #[tokio::test]
    async fn the_object_store_listing_is_the_walk_s_objects_without_its_problems() {
        let (_dir, guard) = folder();
        let listed: Vec<String> = guard
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        assert_eq!(listed, ["a.wav"]);
        let entries: Vec<Listed> = guard.entries().map(Result::unwrap).collect().await;
        let problems = entries
            .iter()
            .filter(|e| matches!(e, Listed::Problem { .. }))
            .count();
        assert_eq!(problems, 2, "{entries:?}");
    }
}
