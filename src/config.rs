//! `lethe.toml` and the environment, turned into validated [`Settings`].
//!
//! This module owns the configuration file format and nothing else: it does
//! not read policies, open stores or touch the database. Unknown keys are an
//! error, because a misspelt `max_fracton` must never silently turn a safety
//! limit off. Relative paths are resolved against the config file's folder so
//! that a config means the same thing whatever the working directory is.
//! Secrets (a database URL with a password) are wrapped in [`Secret`] so that
//! they cannot end up in a log line by accident.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The environment variable naming the config file when `--config` is absent.
pub const ENV_CONFIG: &str = "LETHE_CONFIG";
/// Overrides `database`.
pub const ENV_DATABASE: &str = "LETHE_DATABASE";
/// A file holding the database URL (a Kubernetes Secret), as an alternative to `LETHE_DATABASE`.
pub const ENV_DATABASE_FILE: &str = "LETHE_DATABASE_FILE";
/// Overrides `[signing] key` (for example a Kubernetes Secret mounted as a file).
pub const ENV_SIGNING_KEY: &str = "LETHE_SIGNING_KEY";

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
}

/// A value that must never be printed: `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it (a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A database URL: printable with its password removed.
#[derive(Clone, Debug)]
pub struct DatabaseUrl(Secret);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(Secret::new(url))
    }
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
    pub fn is_sqlite(&self) -> bool {
        self.expose().starts_with("sqlite:")
    }
    /// The URL with any user information and query removed, safe to print.
    pub fn redacted(&self) -> String {
        redact_url(self.expose())
    }
}

/// The key prefix a store URL names: its path, percent-decoded exactly
/// once (the URL parser encodes what the user typed: `s3://b/München` and
/// `s3://b/my rec` name the folders `München` and `my rec`; a literal `%`
/// is written `%25`), without leading or trailing slashes. Unicode is taken
/// as typed, never normalised: NFC and NFD spellings are different keys.
pub fn url_prefix(url: &url::Url) -> Result<String, String> {
    let decoded = percent_encoding::percent_decode_str(url.path())
        .decode_utf8()
        .map_err(|e| format!("the URL's path is not UTF-8 once decoded: {e}"))?;
    Ok(decoded.trim_matches('/').to_string())
}

/// Removes `user:password@` and `?query` from a URL so it can be logged.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return url.split('?').next().unwrap_or_default().to_string(),
    };
    let rest = rest.split('?').next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{path}")
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// The config file these settings came from.
    pub config_path: PathBuf,
    pub policies_dir: PathBuf,
    pub database: DatabaseUrl,
    /// Where certificates and manifests are written.
    pub certificates: Certificates,
    pub signing: Signing,
    pub safety: Safety,
    pub stores: Vec<StoreConfig>,
    /// How many different people must agree to release a hold (1: the one who releases it).
    pub release_approvals: usize,
    /// `[schedule] cron`: when `lethe daemon` runs a pass (with seconds: "0 0 3 * * *").
    pub schedule: Option<String>,
    /// `[daemon] listen`: where the daemon serves /metrics and /healthz (loopback by default).
    pub daemon_listen: std::net::SocketAddr,
}

/// A folder, or an object store (a Kubernetes pod has no lasting disk).
#[derive(Clone, Debug)]
pub enum Certificates {
    Folder(PathBuf),
    Store(StoreConfig),
}

#[derive(Clone, Debug)]
pub struct Signing {
    pub key_path: PathBuf,
    pub key_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Safety {
    pub max_deletions: u64,
    pub max_fraction: f64,
    /// The most this machine's clock may differ from the database's before a run refuses to delete.
    pub max_clock_skew: std::time::Duration,
    /// How long a shard waits for the other shards of its pass to plan, so
    /// that the limits are checked on the whole pass; then it deletes nothing.
    pub shard_wait: std::time::Duration,
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub name: String,
    /// The store URL with relative local paths made absolute.
    pub url: String,
    /// `[stores.options]`: object_store builder settings, validated for the
    /// URL's scheme (credentials are refused: they come from the environment).
    pub options: Vec<(String, String)>,
    pub retry: RetrySettings,
    /// What the operator asserts about deletions in this store; a run
    /// refuses to start if the store says otherwise.
    pub deletion_mode: Option<DeletionMode>,
    /// `[stores.inject_faults]`: for testing only, makes the store's client
    /// fail on purpose (see `store::faults`).
    pub faults: Option<Box<FaultSettings>>,
    /// `listing_order`: what the operator says of the store's listing order;
    /// `None` leaves it to the store's kind (see `store::ListingOrder`).
    pub listing_order: Option<ListingOrderSetting>,
    /// The key prefix, inside this store, of the certificate destination
    /// when it lies there (`""` never: a destination at the root is refused).
    /// lethe's own files under it are invisible to the store's listing.
    pub certificates_prefix: Option<String>,
}

/// `[[stores]] listing_order`: whether the store lists its keys in its own
/// key order (`"lexicographic"`: UTF-8 bytes on S3 and GCS, UTF-16 code
/// units on Azure, lethe's walk on a local folder), so that the scan may
/// infer a sidecar's absence from the listing, or promises no order
/// (`"unordered"`: every sidecar is fetched).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListingOrderSetting {
    Lexicographic,
    Unordered,
}

/// `[stores.inject_faults]`: the chance of each fault per request (per key
/// for `partial`), drawn from a generator seeded with `seed`. For fault
/// tests; a run with it logs a warning at start.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultSettings {
    pub seed: u64,
    /// A transient error (as an HTTP 500): the request is not carried out.
    pub error: f64,
    /// Throttling (as an HTTP 503 SlowDown): not carried out.
    pub throttle: f64,
    /// Waits `delay`, then fails as a timeout: not carried out.
    pub timeout: f64,
    /// The request is carried out but its answer is lost: an error comes back.
    pub lost_reply: f64,
    /// Waits `delay`, then carries the request out.
    pub slow: f64,
    /// In a bulk delete, each key fails alone with this chance (half of
    /// those after the key was in fact deleted).
    pub partial: f64,
    pub delay: std::time::Duration,
    /// Listings are cut into pages of this many entries, each in the store's
    /// order, and every four pages are listed in an order drawn from the seed
    /// (0: the store's own order), as a store that promises no order may list
    /// them.
    pub reorder: usize,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeletionMode {
    /// Gone, no earlier version kept.
    Permanent,
    /// A versioned bucket: the current version is replaced by a delete
    /// marker, earlier versions remain.
    DeleteMarker,
    /// Recoverable for the store's soft-delete retention period.
    SoftDeleted,
}

impl DeletionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionMode::Permanent => "permanent",
            DeletionMode::DeleteMarker => "delete-marker",
            DeletionMode::SoftDeleted => "soft-deleted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "permanent" => Some(DeletionMode::Permanent),
            "delete-marker" => Some(DeletionMode::DeleteMarker),
            "soft-deleted" => Some(DeletionMode::SoftDeleted),
            _ => None,
        }
    }
}

/// `[stores.retry]`: object_store's retry settings; `None` keeps its default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RetrySettings {
    pub max_retries: Option<usize>,
    pub retry_timeout: Option<std::time::Duration>,
    pub init_backoff: Option<std::time::Duration>,
    pub max_backoff: Option<std::time::Duration>,
    pub backoff_base: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_policies")]
    policies: String,
    #[serde(default = "default_database")]
    database: String,
    #[serde(default = "default_certificates")]
    certificates: String,
    /// Options of the certificates' object store, when `certificates` is a URL.
    #[serde(default)]
    certificates_options:
        std::collections::BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>,
    #[serde(default)]
    certificates_retry: Option<RawRetry>,
    signing: Option<RawSigning>,
    #[serde(default)]
    safety: RawSafety,
    #[serde(default)]
    stores: Vec<toml::Spanned<RawStore>>,
    #[serde(default)]
    holds: Option<RawHolds>,
    #[serde(default)]
    schedule: Option<RawSchedule>,
    #[serde(default)]
    daemon: Option<RawDaemon>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: toml::Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    listen: Option<toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHolds {
    release_approvals: Option<toml::Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    #[serde(default = "default_key")]
    key: String,
    key_id: toml::Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSafety {
    #[serde(default = "default_max_deletions")]
    max_deletions: u64,
    #[serde(default)]
    max_fraction: Option<toml::Spanned<f64>>,
    #[serde(default)]
    max_clock_skew: Option<toml::Spanned<String>>,
    #[serde(default)]
    shard_wait: Option<toml::Spanned<String>>,
}

impl Default for RawSafety {
    fn default() -> Self {
        Self {
            max_deletions: default_max_deletions(),
            max_fraction: None,
            max_clock_skew: None,
            shard_wait: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    name: toml::Spanned<String>,
    url: toml::Spanned<String>,
    #[serde(default)]
    options: std::collections::BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>,
    #[serde(default)]
    retry: Option<RawRetry>,
    #[serde(default)]
    deletion_mode: Option<toml::Spanned<String>>,
    #[serde(default)]
    inject_faults: Option<toml::Spanned<RawFaults>>,
    #[serde(default)]
    listing_order: Option<toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFaults {
    seed: u64,
    #[serde(default)]
    error: f64,
    #[serde(default)]
    throttle: f64,
    #[serde(default)]
    timeout: f64,
    #[serde(default)]
    lost_reply: f64,
    #[serde(default)]
    slow: f64,
    #[serde(default)]
    partial: f64,
    #[serde(default)]
    delay: Option<String>,
    #[serde(default)]
    reorder: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_retries: Option<usize>,
    retry_timeout: Option<toml::Spanned<String>>,
    init_backoff: Option<toml::Spanned<String>>,
    max_backoff: Option<toml::Spanned<String>>,
    backoff_base: Option<toml::Spanned<f64>>,
}

fn default_policies() -> String {
    "policies".into()
}
fn default_database() -> String {
    "sqlite://lethe.db".into()
}
fn default_certificates() -> String {
    "certificates".into()
}
fn default_key() -> String {
    "keys/lethe.key".into()
}
fn default_max_deletions() -> u64 {
    100_000
}
fn default_max_fraction() -> f64 {
    0.5
}

/// Where the config file is: `--config`, else `$LETHE_CONFIG`, else `./lethe.toml`.
pub fn locate(flag: Option<&Path>, env: Option<&str>) -> PathBuf {
    match (flag, env) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(e)) if !e.is_empty() => PathBuf::from(e),
        _ => PathBuf::from("lethe.toml"),
    }
}

/// Environment overrides, passed in explicitly so that tests need not touch
/// the process environment.
#[derive(Clone, Debug, Default)]
pub struct EnvOverrides {
    pub database: Option<String>,
    /// A file holding the database URL (a mounted Secret), instead of `database`.
    pub database_file: Option<PathBuf>,
    pub signing_key: Option<String>,
}

impl EnvOverrides {
    pub fn from_process() -> Self {
        let get = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        Self {
            database: get(ENV_DATABASE),
            database_file: get(ENV_DATABASE_FILE).map(PathBuf::from),
            signing_key: get(ENV_SIGNING_KEY),
        }
    }
}

impl Settings {
    /// Reads and validates the config file, then applies the environment.
    pub fn load(path: &Path, env: &EnvOverrides) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text, env)
    }

    pub fn parse(path: &Path, text: &str, env: &EnvOverrides) -> Result<Self> {
        let at = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_column(text, span.start);
            ConfigError::At {
                path: path.into(),
                line,
                column,
                message,
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_column(text, s.start))
                .unwrap_or((1, 1));
            ConfigError::At {
                path: path.into(),
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let base = std::path::absolute(&base).unwrap_or(base);

        let fraction = match &raw.safety.max_fraction {
            Some(f) if !(0.0..=1.0).contains(f.get_ref()) => {
                return Err(at(
                    f.span(),
                    format!("max_fraction must be between 0 and 1, got {}", f.get_ref()),
                ));
            }
            Some(f) => *f.get_ref(),
            None => default_max_fraction(),
        };

        let release_approvals = match raw
            .holds
            .as_ref()
            .and_then(|h| h.release_approvals.as_ref())
        {
            Some(n) if (1..=10).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                return Err(at(
                    n.span(),
                    format!(
                        "release_approvals must be between 1 and 10, got {}",
                        n.get_ref()
                    ),
                ));
            }
            None => 1,
        };
        let schedule = match &raw.schedule {
            Some(s) => {
                let cron = s.cron.get_ref().trim();
                parse_cron(cron).map_err(|e| at(s.cron.span(), e))?;
                Some(cron.to_string())
            }
            None => None,
        };
        let daemon_listen = match raw.daemon.as_ref().and_then(|d| d.listen.as_ref()) {
            Some(l) => l.get_ref().parse().map_err(|_| {
                at(
                    l.span(),
                    format!(
                        "listen {:?} is not an address like 127.0.0.1:9464",
                        l.get_ref()
                    ),
                )
            })?,
            None => std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
        };
        let max_clock_skew = match &raw.safety.max_clock_skew {
            Some(s) => humantime::parse_duration(s.get_ref().trim()).map_err(|e| {
                at(
                    s.span(),
                    format!("max_clock_skew: expected a duration like \"5m\": {e}"),
                )
            })?,
            None => std::time::Duration::from_secs(300),
        };
        let shard_wait = match &raw.safety.shard_wait {
            Some(s) => humantime::parse_duration(s.get_ref().trim()).map_err(|e| {
                at(
                    s.span(),
                    format!("shard_wait: expected a duration like \"10m\": {e}"),
                )
            })?,
            None => std::time::Duration::from_secs(600),
        };
        let signing = match raw.signing {
            Some(s) => {
                if s.key_id.get_ref().trim().is_empty() {
                    return Err(at(s.key_id.span(), "key_id must not be empty".into()));
                }
                Signing {
                    key_path: base.join(&s.key),
                    key_id: s.key_id.into_inner(),
                }
            }
            None => {
                return Err(ConfigError::Invalid {
                    path: path.into(),
                    message: "missing [signing] table with key_id (and key)".into(),
                });
            }
        };
        let signing = match &env.signing_key {
            Some(k) => Signing {
                key_path: PathBuf::from(k),
                ..signing
            },
            None => signing,
        };

        if raw.stores.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.into(),
                message: "no [[stores]] configured".into(),
            });
        }
        let mut stores: Vec<StoreConfig> = Vec::new();
        for store in raw.stores {
            let span = store.span();
            let store = store.into_inner();
            let name = store.name.get_ref().trim().to_string();
            if name.is_empty() {
                return Err(at(store.name.span(), "store name must not be empty".into()));
            }
            if stores.iter().any(|s| s.name == name) {
                return Err(at(span, format!("store name {name:?} is used twice")));
            }
            let url = resolve_store_url(&base, store.url.get_ref())
                .map_err(|m| at(store.url.span(), m))?;
            let options = store_options(&at, &url, &store.options)?;
            let retry = retry_settings(&at, store.retry.as_ref())?;
            let deletion_mode = match &store.deletion_mode {
                None => None,
                Some(m) => Some(DeletionMode::parse(m.get_ref()).ok_or_else(|| {
                    at(m.span(), format!("deletion_mode must be \"permanent\", \"delete-marker\" or \"soft-deleted\", not {:?}", m.get_ref()))
                })?),
            };
            let faults = match &store.inject_faults {
                None => None,
                Some(f) => Some(Box::new(
                    fault_settings(&url, f.get_ref()).map_err(|m| at(f.span(), m))?,
                )),
            };
            let listing_order = match &store.listing_order {
                None => None,
                Some(o) => Some(listing_order(&url, o.get_ref()).map_err(|m| at(o.span(), m))?),
            };
            stores.push(StoreConfig {
                name,
                url,
                options,
                retry,
                deletion_mode,
                faults,
                listing_order,
                certificates_prefix: None,
            });
        }

        let certificates = if raw.certificates.contains("://") {
            let url = resolve_store_url(&base, &raw.certificates).map_err(|message| {
                ConfigError::Invalid {
                    path: path.into(),
                    message: format!("certificates: {message}"),
                }
            })?;
            let options = store_options(&at, &url, &raw.certificates_options)?;
            let retry = retry_settings(&at, raw.certificates_retry.as_ref())?;
            if url.starts_with("file://") {
                Certificates::Folder(
                    url::Url::parse(&url)
                        .ok()
                        .and_then(|u| u.to_file_path().ok())
                        .unwrap_or_default(),
                )
            } else {
                Certificates::Store(StoreConfig {
                    name: "certificates".into(),
                    url,
                    options,
                    retry,
                    deletion_mode: None,
                    faults: None,
                    listing_order: None,
                    certificates_prefix: None,
                })
            }
        } else {
            if let Some((key, _)) = raw.certificates_options.iter().next() {
                return Err(at(
                    key.span(),
                    "[certificates_options] applies only when certificates is an object-store URL"
                        .into(),
                ));
            }
            Certificates::Folder(base.join(&raw.certificates))
        };

        for store in &mut stores {
            store.certificates_prefix =
                certificates_within(store, &certificates).map_err(|message| {
                    ConfigError::Invalid {
                        path: path.into(),
                        message,
                    }
                })?;
        }

        let from_env = match (&env.database, &env.database_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Env {
                    var: ENV_DATABASE_FILE,
                    message: format!("set {ENV_DATABASE} or {ENV_DATABASE_FILE}, not both"),
                });
            }
            (Some(url), None) => Some((ENV_DATABASE, url.clone())),
            (None, Some(file)) => {
                let env_err = |message: String| ConfigError::Env {
                    var: ENV_DATABASE_FILE,
                    message,
                };
                let url = std::fs::read_to_string(file)
                    .map_err(|e| env_err(format!("cannot read {}: {e}", file.display())))?
                    .trim()
                    .to_string();
                if url.is_empty() {
                    return Err(env_err(format!("{} is empty", file.display())));
                }
                Some((ENV_DATABASE_FILE, url))
            }
            (None, None) => None,
        };
        let database = match &from_env {
            Some((_, url)) => resolve_database(&std::env::current_dir().unwrap_or_default(), url),
            None => resolve_database(&base, &raw.database),
        }
        .map_err(|message| match &from_env {
            Some((var, _)) => ConfigError::Env { var, message },
            None => ConfigError::Invalid {
                path: path.into(),
                message: format!("database: {message}"),
            },
        })?;

        Ok(Settings {
            config_path: path.to_path_buf(),
            policies_dir: base.join(&raw.policies),
            database,
            certificates,
            signing,
            safety: Safety {
                max_deletions: raw.safety.max_deletions,
                max_fraction: fraction,
                max_clock_skew,
                shard_wait,
            },
            stores,
            release_approvals,
            schedule,
            daemon_listen,
        })
    }

    /// Files and folders that belong to lethe itself; a store must never
    /// delete them even when they lie inside it.
    pub fn own_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![
            self.config_path.clone(),
            self.policies_dir.clone(),
            self.signing.key_path.clone(),
        ];
        let mut public = self.signing.key_path.clone().into_os_string();
        public.push(".pub");
        paths.push(public.into());
        // The certificate folder is not among them: a store that contains it
        // hides lethe's files there by name (`certificates_prefix`), and the
        // recordings beside them stay the store's.
        if let Some(rest) = self.database.expose().strip_prefix("sqlite://") {
            let db = rest.split('?').next().unwrap_or(rest);
            for suffix in ["", "-wal", "-shm", "-journal"] {
                paths.push(PathBuf::from(format!("{db}{suffix}")));
            }
        }
        paths
    }

    pub fn store(&self, name: &str) -> Option<&StoreConfig> {
        self.stores.iter().find(|s| s.name == name)
    }
}

/// Where a store or a certificate destination is, normalised so that two
/// spellings of one place compare equal: a local path made absolute, without
/// `.` and `..`, its existing part resolved through links; an object-store URL
/// as its service, bucket (or container) and path segments.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    Object {
        service: &'static str,
        bucket: String,
        segments: Vec<String>,
    },
}

impl Place {
    fn of_url(url: &str) -> Option<Place> {
        let parsed = url::Url::parse(url).ok()?;
        let service = match parsed.scheme() {
            "file" => return Some(Place::of_path(&parsed.to_file_path().ok()?)),
            "s3" | "s3a" => "s3",
            "az" | "azure" | "abfs" | "abfss" => "azure",
            "gs" => "gcs",
            _ => return None,
        };
        // `abfss://container@account.dfs.core.windows.net/path` names the container as the user.
        let bucket = match parsed.username() {
            "" => parsed.host_str().unwrap_or_default().to_string(),
            container => format!("{container}@{}", parsed.host_str().unwrap_or_default()),
        };
        let segments = url_prefix(&parsed)
            .ok()?
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Some(Place::Object {
            service,
            bucket,
            segments,
        })
    }

    fn of_path(path: &Path) -> Place {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut clean = PathBuf::new();
        for part in absolute.components() {
            match part {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                other => clean.push(other),
            }
        }
        // The existing part through its links (the store's root is
        // canonicalised when it is opened); the rest as written.
        let mut existing = clean.as_path();
        let mut rest = Vec::new();
        let resolved = loop {
            if let Ok(real) = std::fs::canonicalize(existing) {
                break rest.iter().rev().fold(real, |p: PathBuf, n| p.join(n));
            }
            match (existing.file_name(), existing.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name.to_os_string());
                    existing = parent;
                }
                _ => break clean.clone(),
            }
        };
        Place::Local(resolved)
    }

    /// `Some(segments)` of `inner` below `self` when `inner` is `self` or lies inside it.
    fn below(&self, inner: &Place) -> Option<Vec<String>> {
        match (self, inner) {
            (Place::Local(outer), Place::Local(inner)) => {
                let rest = inner.strip_prefix(outer).ok()?;
                Some(
                    rest.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect(),
                )
            }
            (
                Place::Object {
                    service: s1,
                    bucket: b1,
                    segments: outer,
                },
                Place::Object {
                    service: s2,
                    bucket: b2,
                    segments: inner,
                },
            ) if s1 == s2 && b1 == b2 && inner.starts_with(outer) => {
                Some(inner[outer.len()..].to_vec())
            }
            _ => None,
        }
    }
}

/// The key prefix of the certificate destination inside `store`, if it lies
/// there. A destination that is the store's root, or that contains the
/// store, is refused: lethe's own files and the recordings would share one
/// listing (and a root destination would make every recording lethe's own).
fn certificates_within(
    store: &StoreConfig,
    certificates: &Certificates,
) -> std::result::Result<Option<String>, String> {
    let Some(store_place) = Place::of_url(&store.url) else {
        return Ok(None);
    };
    let (certs_place, shown) = match certificates {
        Certificates::Folder(dir) => (Place::of_path(dir), dir.display().to_string()),
        Certificates::Store(c) => match Place::of_url(&c.url) {
            Some(p) => (p, redact_url(&c.url)),
            None => return Ok(None),
        },
    };
    let advice = "give certificates a folder or prefix of their own, beside the store or inside it";
    if let Some(rest) = store_place.below(&certs_place) {
        if rest.is_empty() {
            return Err(format!(
                "certificates: {shown} is the root of store {:?}; {advice}",
                store.name
            ));
        }
        return Ok(Some(rest.join("/")));
    }
    if certs_place.below(&store_place).is_some() {
        return Err(format!(
            "certificates: {shown} contains store {:?} ({}); {advice}",
            store.name,
            redact_url(&store.url)
        ));
    }
    Ok(None)
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// Store URLs: `file:///abs/path`, or a plain path (relative to the config
/// folder). Cloud schemes are recognised so that the error says what to do.
fn resolve_store_url(base: &Path, url: &str) -> std::result::Result<String, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("store url must not be empty".into());
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return match scheme {
            "file" => {
                let parsed =
                    url::Url::parse(url).map_err(|e| format!("invalid file URL {url:?}: {e}"))?;
                parsed.to_file_path().map_err(|_| {
                    format!("file URL {url:?} must be absolute, like file:///var/lib/recordings")
                })?;
                Ok(url.to_string())
            }
            "s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "gs" => {
                let parsed =
                    url::Url::parse(url).map_err(|e| format!("invalid store URL {url:?}: {e}"))?;
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(format!(
                        "store URL {url:?} names no bucket or container, like {scheme}://bucket/prefix"
                    ));
                }
                if parsed.query().is_some()
                    || parsed.username() != ""
                    || parsed.password().is_some()
                {
                    return Err("a store URL carries no credentials or query; use [stores.options] and the environment".into());
                }
                Ok(url.trim_end_matches('/').to_string())
            }
            other => Err(format!(
                "unknown store URL scheme {other}://; use file:///path, a folder path, s3://, az:// or gs://"
            )),
        };
    }
    let path =
        std::path::absolute(base.join(url)).map_err(|e| format!("invalid path {url:?}: {e}"))?;
    url::Url::from_file_path(&path)
        .map(|u| u.to_string())
        .map_err(|_| format!("invalid path {url:?}"))
}

/// `[stores.options]`, validated for the URL's scheme, as strings.
fn store_options(
    at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
    url: &str,
    raw: &std::collections::BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>,
) -> Result<Vec<(String, String)>> {
    let scheme = url.split_once("://").map_or("file", |(s, _)| s);
    let mut options = Vec::new();
    for (key, value) in raw {
        check_store_option(scheme, key.get_ref()).map_err(|m| at(key.span(), m))?;
        let text = match value.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => {
                return Err(at(
                    value.span(),
                    format!(
                        "option {} must be a string, number or boolean",
                        key.get_ref()
                    ),
                ));
            }
        };
        options.push((key.get_ref().to_ascii_lowercase(), text));
    }
    Ok(options)
}

/// `[stores.retry]`, with durations like "30s".
fn retry_settings(
    at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
    raw: Option<&RawRetry>,
) -> Result<RetrySettings> {
    let Some(r) = raw else {
        return Ok(RetrySettings::default());
    };
    let duration = |d: &Option<toml::Spanned<String>>| -> Result<Option<std::time::Duration>> {
        d.as_ref()
            .map(|d| {
                humantime::parse_duration(d.get_ref().trim()).map_err(|e| {
                    at(
                        d.span(),
                        format!("expected a duration like \"30s\" or \"2m\": {e}"),
                    )
                })
            })
            .transpose()
    };
    if let Some(b) = &r.backoff_base
        && *b.get_ref() <= 1.0
    {
        return Err(at(b.span(), "backoff_base must be greater than 1".into()));
    }
    Ok(RetrySettings {
        max_retries: r.max_retries,
        retry_timeout: duration(&r.retry_timeout)?,
        init_backoff: duration(&r.init_backoff)?,
        max_backoff: duration(&r.max_backoff)?,
        backoff_base: r.backoff_base.as_ref().map(|b| *b.get_ref()),
    })
}

/// `listing_order`, checked. An S3 directory bucket (a name ending in
/// `--x-s3`, S3 Express One Zone) cannot be declared lexicographic: AWS
/// documents that it lists keys in no particular order.
fn listing_order(url: &str, value: &str) -> std::result::Result<ListingOrderSetting, String> {
    match value {
        "unordered" => Ok(ListingOrderSetting::Unordered),
        "lexicographic" => {
            let directory_bucket = url::Url::parse(url).is_ok_and(|u| {
                matches!(u.scheme(), "s3" | "s3a")
                    && u.host_str().is_some_and(|h| h.ends_with("--x-s3"))
            });
            if directory_bucket {
                return Err("listing_order = \"lexicographic\" cannot be said of an S3 directory bucket (a name ending in --x-s3): it lists keys in no particular order".into());
            }
            Ok(ListingOrderSetting::Lexicographic)
        }
        other => Err(format!(
            "listing_order must be \"lexicographic\" or \"unordered\", not {other:?}"
        )),
    }
}

/// `[stores.inject_faults]`, checked: chances between 0 and 1 that add up
/// to at most 1 per request, on an object-store URL (a local folder does not
/// go through object_store's client).
fn fault_settings(url: &str, f: &RawFaults) -> std::result::Result<FaultSettings, String> {
    if url.starts_with("file:") {
        return Err(
            "inject_faults applies to object-store URLs (s3, az, gs), not to a local folder".into(),
        );
    }
    let chances = [
        ("error", f.error),
        ("throttle", f.throttle),
        ("timeout", f.timeout),
        ("lost_reply", f.lost_reply),
        ("slow", f.slow),
        ("partial", f.partial),
    ];
    for (name, p) in chances {
        if !(0.0..=1.0).contains(&p) {
            return Err(format!(
                "inject_faults.{name} must be a chance between 0 and 1, not {p}"
            ));
        }
    }
    if f.error + f.throttle + f.timeout + f.lost_reply + f.slow > 1.0 {
        return Err(
            "inject_faults: error, throttle, timeout, lost_reply and slow add up to more than 1"
                .into(),
        );
    }
    if f.reorder > 10_000 {
        return Err(format!(
            "inject_faults.reorder: pages of at most 10000 entries, not {}",
            f.reorder
        ));
    }
    let delay = match &f.delay {
        None => std::time::Duration::from_millis(50),
        Some(d) => humantime::parse_duration(d.trim())
            .map_err(|e| format!("inject_faults.delay: expected a duration like \"50ms\": {e}"))?,
    };
    Ok(FaultSettings {
        seed: f.seed,
        error: f.error,
        throttle: f.throttle,
        timeout: f.timeout,
        lost_reply: f.lost_reply,
        slow: f.slow,
        partial: f.partial,
        delay,
        reorder: f.reorder,
    })
}

/// Checks one `[stores.options]` key against the builder of the URL's scheme.
/// Credentials are refused: they come from the environment or ambient identity.
fn check_store_option(scheme: &str, key: &str) -> std::result::Result<(), String> {
    use object_store::aws::AmazonS3ConfigKey as S3;
    use object_store::azure::AzureConfigKey as Az;
    use object_store::gcp::GoogleConfigKey as Gcs;
    let lower = key.to_ascii_lowercase();
    let secret = |env: &str| {
        Err(format!(
            "{key} is a credential: it never belongs in lethe.toml; set {env} in the environment (or use the platform's workload identity)"
        ))
    };
    let from_url = || Err(format!("{key} comes from the store URL"));
    match scheme {
        "s3" | "s3a" => match lower.parse::<S3>() {
            Ok(S3::AccessKeyId | S3::SecretAccessKey | S3::Token) => {
                secret("AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN")
            }
            Ok(S3::Encryption(_)) if lower.contains("customer_key") => {
                secret("AWS_SSE_CUSTOMER_KEY_BASE64")
            }
            Ok(S3::Bucket) => from_url(),
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "unknown S3 option {key:?} (see object_store's AmazonS3ConfigKey: endpoint, region, allow_http, ...)"
            )),
        },
        "az" | "azure" | "abfs" | "abfss" => match lower.parse::<Az>() {
            Ok(
                Az::AccessKey | Az::ClientSecret | Az::SasKey | Az::Token | Az::FabricSessionToken,
            ) => secret("AZURE_STORAGE_ACCOUNT_KEY / AZURE_CLIENT_SECRET / AZURE_STORAGE_SAS_KEY"),
            Ok(Az::ContainerName) => from_url(),
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "unknown Azure option {key:?} (see object_store's AzureConfigKey: account_name, endpoint, use_emulator, ...)"
            )),
        },
        "gs" => match lower.parse::<Gcs>() {
            Ok(Gcs::ServiceAccountKey | Gcs::BearerToken) => {
                secret("GOOGLE_SERVICE_ACCOUNT / GOOGLE_APPLICATION_CREDENTIALS")
            }
            Ok(Gcs::Bucket) => from_url(),
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "unknown GCS option {key:?} (see object_store's GoogleConfigKey: base_url, service_account, ...)"
            )),
        },
        _ => Err("local folders take no options".into()),
    }
}

fn resolve_database(base: &Path, url: &str) -> std::result::Result<DatabaseUrl, String> {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (file, query) = match rest.split_once('?') {
            Some((f, q)) => (f, Some(q)),
            None => (rest, None),
        };
        if file.is_empty() {
            return Err("sqlite URL names no file, e.g. sqlite://lethe.db".into());
        }
        if file == ":memory:" {
            return Err(
                "an in-memory SQLite ledger would forget every deletion; name a file".into(),
            );
        }
        let path = std::path::absolute(base.join(file)).map_err(|e| e.to_string())?;
        let query = query.map(|q| format!("&{q}")).unwrap_or_default();
        return Ok(DatabaseUrl::new(format!(
            "sqlite://{}?mode=rwc{query}",
            path.display()
        )));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DatabaseUrl::new(url));
    }
    Err(format!(
        "unsupported database URL {:?}; use sqlite://FILE or postgres://...",
        redact_url(url)
    ))
}

/// Parses a `[schedule] cron` expression the way the daemon's scheduler
/// (tokio-cron-scheduler, croner) will: six fields, seconds first, in UTC,
/// and a day-of-month and a day-of-week must both match.
pub fn parse_cron(cron: &str) -> Result<croner::Cron, String> {
    let fields = cron.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "cron {cron:?} has {fields} fields; it needs six, seconds first, in UTC (e.g. \"0 0 3 * * *\" for 03:00 every day)"
        ));
    }
    let parsed = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(cron)
        .map_err(|e| format!("cron {cron:?} is not valid: {e}"))?;
    // A valid expression may still name no instant (31 February): the daemon
    // would wait forever. Six fields have no year, so an expression that
    // fires at all fires after any fixed date; searching from one keeps this
    // check free of the clock.
    let start = chrono::DateTime::<chrono::Utc>::from_timestamp(946_684_800, 0)
        .expect("2000-01-01T00:00:00Z is representable");
    if parsed.find_next_occurrence(&start, true).is_err() {
        return Err(format!(
            "cron {cron:?} never fires (no date matches it, e.g. 31 February); the daemon would wait forever"
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[signing]
key_id = "k1"
[[stores]]
name = "recordings"
url = "recordings"
"#;

    fn parse(text: &str) -> Result<Settings> {
        Settings::parse(
            Path::new("/etc/lethe/lethe.toml"),
            text,
            &EnvOverrides::default(),
        )
    }

    #[test]
    fn defaults_and_relative_paths() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.policies_dir, PathBuf::from("/etc/lethe/policies"));
        assert!(
            matches!(&s.certificates, Certificates::Folder(d) if d == &PathBuf::from("/etc/lethe/certificates"))
        );
        assert_eq!(
            s.signing.key_path,
            PathBuf::from("/etc/lethe/keys/lethe.key")
        );
        assert_eq!(s.stores[0].url, "file:///etc/lethe/recordings");
        assert_eq!(s.database.expose(), "sqlite:///etc/lethe/lethe.db?mode=rwc");
        assert_eq!(
            s.safety,
            Safety {
                max_deletions: 100_000,
                max_fraction: 0.5,
                max_clock_skew: std::time::Duration::from_secs(300),
                shard_wait: std::time::Duration::from_secs(600),
            }
        );
    }

    #[test]
    fn listing_order_is_checked_and_left_to_the_store_by_default() {
        let store = |url: &str, line: &str| {
            parse(&format!(
                "[signing]\nkey_id = \"k1\"\n[[stores]]\nname = \"r\"\nurl = \"{url}\"\n{line}"
            ))
        };
        assert_eq!(parse(MINIMAL).unwrap().stores[0].listing_order, None);
        let s = store("s3://b/calls", "listing_order = \"lexicographic\"\n").unwrap();
        assert_eq!(
            s.stores[0].listing_order,
            Some(ListingOrderSetting::Lexicographic)
        );
        let s = store("recordings", "listing_order = \"unordered\"\n").unwrap();
        assert_eq!(
            s.stores[0].listing_order,
            Some(ListingOrderSetting::Unordered)
        );
        let err = store("s3://b", "listing_order = \"sorted\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":6:17: listing_order must be \"lexicographic\" or \"unordered\""),
            "{err}"
        );
        let err = store(
            "s3://recordings--use1-az4--x-s3/calls",
            "listing_order = \"lexicographic\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("S3 directory bucket"), "{err}");
        assert!(
            store(
                "s3://recordings--use1-az4--x-s3",
                "listing_order = \"unordered\"\n"
            )
            .is_ok()
        );
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = parse(&format!("{MINIMAL}\n[safety]\nmax_fracton = 0.9\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/lethe/lethe.toml:9:1: unknown field `max_fracton`"),
            "{err}"
        );
    }

    #[test]
    fn fraction_out_of_range() {
        let err = parse(&format!("{MINIMAL}\n[safety]\nmax_fraction = 1.5\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":9:16: max_fraction must be between 0 and 1"),
            "{err}"
        );
    }

    #[test]
    fn schedule_and_daemon_address() {
        let ok = parse(&format!(
            "{MINIMAL}\n[schedule]\ncron = \"0 30 2 * * *\"\n[daemon]\nlisten = \"0.0.0.0:9100\"\n"
        ))
        .unwrap();
        assert_eq!(ok.schedule.as_deref(), Some("0 30 2 * * *"));
        assert_eq!(ok.daemon_listen.to_string(), "0.0.0.0:9100");
        assert_eq!(
            parse(MINIMAL).unwrap().daemon_listen.to_string(),
            "127.0.0.1:9464",
            "loopback by default"
        );
        // Five fields (the crontab habit) would silently mean something else.
        let err = parse(&format!("{MINIMAL}\n[schedule]\ncron = \"0 3 * * *\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":9:8: cron \"0 3 * * *\" has 5 fields"),
            "{err}"
        );
        let err = parse(&format!("{MINIMAL}\n[schedule]\ncron = \"0 0 25 * * *\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":9:8: cron \"0 0 25 * * *\" is not valid"),
            "{err}"
        );
        for never in ["0 0 3 31 2 *", "0 0 3 30 2 *", "0 0 0 31 4,6,9,11 *"] {
            let err = parse(&format!("{MINIMAL}\n[schedule]\ncron = \"{never}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!(":9:8: cron \"{never}\" never fires")),
                "{err}"
            );
        }
        // Rare is not never: 29 February that is a Monday (every 28 years or so).
        assert!(
            parse(&format!(
                "{MINIMAL}\n[schedule]\ncron = \"0 0 0 29 2 MON\"\n"
            ))
            .is_ok()
        );
        let err = parse(&format!("{MINIMAL}\n[daemon]\nlisten = \"localhost\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(":9:10: listen \"localhost\""), "{err}");
    }

    #[test]
    fn env_overrides_database_and_key() {
        let env = EnvOverrides {
            database: Some("postgres://u:pw@db/x".into()),
            signing_key: Some("/run/secrets/key".into()),
            ..Default::default()
        };
        let s = Settings::parse(Path::new("/etc/lethe/lethe.toml"), MINIMAL, &env).unwrap();
        assert_eq!(s.database.redacted(), "postgres://***@db/x");
        assert!(!format!("{s:?}").contains("pw"));
        assert_eq!(s.signing.key_path, PathBuf::from("/run/secrets/key"));
    }

    #[test]
    fn the_database_url_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://u:pw@db:5432/lethe\n").unwrap();
        let env = EnvOverrides {
            database_file: Some(file.clone()),
            ..Default::default()
        };
        let s = Settings::parse(Path::new("/etc/lethe/lethe.toml"), MINIMAL, &env).unwrap();
        assert_eq!(s.database.redacted(), "postgres://***@db:5432/lethe");
        let both = EnvOverrides {
            database: Some("sqlite://x.db".into()),
            database_file: Some(file.clone()),
            ..Default::default()
        };
        let err = Settings::parse(Path::new("/e/lethe.toml"), MINIMAL, &both)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
        std::fs::write(&file, "  \n").unwrap();
        let err = Settings::parse(Path::new("/e/lethe.toml"), MINIMAL, &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LETHE_DATABASE_FILE") && err.contains("is empty"),
            "{err}"
        );
        let missing = EnvOverrides {
            database_file: Some(dir.path().join("nope")),
            ..Default::default()
        };
        let err = Settings::parse(Path::new("/e/lethe.toml"), MINIMAL, &missing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read"), "{err}");
    }

    #[test]
    fn cloud_stores_take_validated_options_but_never_credentials() {
        let cloud = |extra: &str| {
            parse(&MINIMAL.replace(
                "url = \"recordings\"",
                &format!("url = \"s3://bucket/calls\"\n{extra}"),
            ))
        };
        let s = cloud("deletion_mode = \"delete-marker\"\n[stores.options]\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true\n[stores.retry]\nmax_retries = 3\nretry_timeout = \"30s\"").unwrap();
        assert_eq!(s.stores[0].url, "s3://bucket/calls");
        assert_eq!(
            s.stores[0].options,
            vec![
                ("allow_http".to_string(), "true".to_string()),
                ("endpoint".to_string(), "http://127.0.0.1:9000".to_string())
            ]
        );
        assert_eq!(s.stores[0].retry.max_retries, Some(3));
        assert_eq!(
            s.stores[0].retry.retry_timeout,
            Some(std::time::Duration::from_secs(30))
        );
        assert_eq!(s.stores[0].deletion_mode, Some(DeletionMode::DeleteMarker));
        let err = cloud("[stores.options]\naws_secret_access_key = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":8:1: aws_secret_access_key is a credential"),
            "{err}"
        );
        let err = cloud("[stores.options]\nendpiont = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":8:1: unknown S3 option \"endpiont\""),
            "{err}"
        );
        let err = cloud("deletion_mode = \"forever\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("deletion_mode must be"), "{err}");
        let err = cloud("[stores.retry]\nretry_timeout = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":8:17: expected a duration"), "{err}");
        let err = parse(&MINIMAL.replace("url = \"recordings\"", "url = \"ftp://host/x\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("6:7: unknown store URL scheme ftp://"),
            "{err}"
        );
        let err =
            parse(&MINIMAL.replace("url = \"recordings\"", "url = \"s3://key:secret@bucket/x\""))
                .unwrap_err()
                .to_string();
        assert!(err.contains("carries no credentials"), "{err}");
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://user:secret@host:5432/db?sslmode=require"),
            "postgres://***@host:5432/db"
        );
        assert_eq!(redact_url("file:///var/lib/x"), "file:///var/lib/x");
    }

    /// What `certificates_within` should say: `Ok(prefix)`, or `Err(start of the message)`.
    type Nesting = std::result::Result<Option<&'static str>, &'static str>;

    /// Checks a store URL and a certificates value, as `lethe.toml` would spell them.
    fn check_nesting(store: &str, certificates: &str, expected: Nesting) {
        let text = format!(
            "certificates = \"{certificates}\"\n[signing]\nkey_id = \"k1\"\n[[stores]]\nname = \"rec\"\nurl = \"{store}\"\n"
        );
        match (parse(&text), expected) {
            (Ok(s), Ok(prefix)) => assert_eq!(
                s.stores[0].certificates_prefix.as_deref(),
                prefix,
                "{store} / {certificates}"
            ),
            (Err(e), Err(start)) => {
                let e = e.to_string();
                assert!(
                    e.starts_with(&format!("/etc/lethe/lethe.toml: certificates: {start}")),
                    "{store} / {certificates}: {e}"
                );
            }
            (got, _) => panic!("{store} / {certificates}: {:?}", got.map(|_| ())),
        }
    }

    #[test]
    fn a_certificate_destination_is_beside_or_inside_a_store_never_its_root_or_around_it() {
        let cases: &[(&str, &str, Nesting)] = &[
            ("recordings", "certificates", Ok(None)),
            (
                "recordings",
                "recordings/certificates",
                Ok(Some("certificates")),
            ),
            ("recordings", "recordings/calls", Ok(Some("calls"))),
            ("recordings", "./recordings/a/../calls/", Ok(Some("calls"))),
            (
                "recordings",
                "recordings",
                Err("/etc/lethe/recordings is the root of store \"rec\""),
            ),
            (
                "recordings",
                "recordings/.",
                Err("/etc/lethe/recordings/. is the root"),
            ),
            (
                "recordings",
                "file:///etc/lethe/recordings",
                Err("/etc/lethe/recordings is the root"),
            ),
            (
                "recordings",
                ".",
                Err("/etc/lethe/. contains store \"rec\""),
            ),
            ("/etc/lethe/recordings", "/etc", Err("/etc contains store")),
            ("recordings", "recordings-certificates", Ok(None)),
            (
                "s3://rec",
                "s3://rec/certificates",
                Ok(Some("certificates")),
            ),
            ("s3://rec/calls", "s3://rec/calls/lethe", Ok(Some("lethe"))),
            (
                "s3://rec",
                "s3://rec",
                Err("s3://rec is the root of store \"rec\""),
            ),
            (
                "s3://rec/calls",
                "s3://rec/calls/",
                Err("s3://rec/calls is the root"),
            ),
            (
                "s3://rec/calls",
                "s3a://rec/calls",
                Err("s3a://rec/calls is the root"),
            ),
            (
                "s3://rec/calls",
                "s3://rec",
                Err("s3://rec contains store \"rec\" (s3://rec/calls)"),
            ),
            ("s3://rec/calls", "s3://rec/certificates", Ok(None)),
            ("s3://rec/calls", "s3://rec/calls-certificates", Ok(None)),
            ("s3://rec", "s3://other/certificates", Ok(None)),
            ("s3://rec", "gs://rec/certificates", Ok(None)),
            ("s3://rec", "certificates", Ok(None)),
            (
                "az://rec/calls",
                "azure://rec/calls/certs",
                Ok(Some("certs")),
            ),
            ("gs://rec/a", "gs://rec", Err("gs://rec contains store")),
        ];
        for (store, certificates, expected) in cases {
            check_nesting(store, certificates, *expected);
        }
    }
}
