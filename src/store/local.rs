//! The guard around a local folder.
//!
//! `object_store`'s `LocalFileSystem` follows symbolic links while listing
//! (also out of its root), silently skips names it cannot represent (such as
//! `x#1`), and ends a listing at the first non-UTF-8 name. For an erasure tool
//! each of these is a hazard, so lethe lists local folders itself: a walk
//! that never follows a link, lists each folder in name order (up to
//! [`SORT_LIMIT`] entries; a larger one is streamed unsorted and announced as
//! such), and turns every entry it cannot address exactly into a reported
//! problem. Reads and deletes still go through
//! `LocalFileSystem`, after [`LocalGuard::check`] has confirmed that the path is
//! a regular file inside the root.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore};

use super::Listed;

/// Threads a batch of local deletions is spread over.
const DELETE_THREADS: usize = 4;

/// Entries buffered between the walking thread and the async consumer.
const CHANNEL_CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
pub struct LocalGuard {
    root: PathBuf,
    fs: Arc<LocalFileSystem>,
    /// lethe's own files and folders (config, policies, key, ledger,
    /// certificates) when they live inside the store: never listed as
    /// objects, never read or deleted.
    protected: Arc<Vec<PathBuf>>,
}

const PROTECTED: &str =
    "lethe's own file (config, policy, key, ledger or certificates): never touched";

fn is_protected(protected: &[PathBuf], path: &Path) -> bool {
    protected.iter().any(|p| path.starts_with(p))
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
            protected: Arc::new(Vec::new()),
        })
    }

    /// Marks paths as lethe's own. Paths that do not exist yet (a ledger's
    /// `-wal` file) are resolved through their folder.
    pub fn protect(&mut self, paths: &[PathBuf]) {
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
        self.protected = Arc::new(resolved);
    }

    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.fs.clone()
    }

    /// Walks the folder on a blocking thread and streams its entries. A folder
    /// of up to [`SORT_LIMIT`] entries is listed in name order; a larger one
    /// is announced with [`Listed::Unordered`] and its files streamed in the
    /// order the file system yields them, then its subfolders walked. Memory
    /// is bounded by the channel and by [`SORT_LIMIT`] entries per folder
    /// level, whatever the store's size.
    pub fn list(&self) -> BoxStream<'static, std::io::Result<Listed>> {
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_CAPACITY);
        let walker = Walker {
            root: self.root.clone(),
            fs: self.fs.clone(),
            protected: self.protected.clone(),
            tx,
        };
        tokio::task::spawn_blocking(move || walker.walk());
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
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
        if is_protected(&self.protected, &fs_path) {
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

    /// Heads many objects on one blocking thread (a thread hop per object
    /// would cost more than the `lstat` itself). Results in the order of `paths`.
    pub async fn head_many(
        &self,
        paths: Vec<ObjectPath>,
    ) -> Vec<Result<Option<ObjectMeta>, LocalError>> {
        let guard = self.clone();
        let n = paths.len();
        tokio::task::spawn_blocking(move || {
            let mut folders = Folders::default();
            paths
                .into_iter()
                .map(|path| match guard.inspect(&path, &mut folders) {
                    Err(reason) => Err(LocalError::Refused(reason)),
                    Ok((_, None)) => Ok(None),
                    Ok((_, Some(meta))) => Ok(Some(object_meta(path, &meta))),
                })
                .collect()
        })
        .await
        .unwrap_or_else(|e| (0..n).map(|_| Err(LocalError::Io(e.to_string()))).collect())
    }

    /// Deletes many files on one blocking thread, each after the same checks
    /// as [`check`](Self::check). Results in the order of `paths`.
    pub async fn delete_many(&self, paths: Vec<ObjectPath>) -> Vec<Result<bool, LocalError>> {
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
    tx: tokio::sync::mpsc::Sender<std::io::Result<Listed>>,
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
    fn send(&self, item: std::io::Result<Listed>) -> Result<(), Stop> {
        let fatal = item.is_err();
        match self.tx.blocking_send(item) {
            Ok(()) if !fatal => Ok(()),
            _ => Err(Stop),
        }
    }

    fn problem(&self, path: &Path, reason: String) -> Result<(), Stop> {
        self.send(Ok(Listed::Problem {
            name: display_relative(&self.root, path),
            reason,
        }))
    }

    fn walk(self) {
        let _ = self.walk_from_root();
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

/// Why a batch operation on a local file did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalError {
    /// The guard refused (a link, not a regular file, outside the root, lethe's own).
    Refused(String),
    Io(String),
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
            None => return problem("the name is not valid UTF-8, which object keys require"),
        }
    }
    let key = parts.join("/");
    let location = match ObjectPath::parse(&key) {
        Ok(p) => p,
        Err(e) => {
            return problem(&format!(
                "the name cannot be represented as an object key: {e}"
            ));
        }
    };
    // Only an exact round trip guarantees that deleting this key deletes this file.
    match to_filesystem(root, fs, &location) {
        Ok(back) if back == path => {}
        Ok(_) | Err(_) => {
            return problem(
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
}
