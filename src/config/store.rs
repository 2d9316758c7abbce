//! `[[stores]]` and the certificate destination: where lethe reads and writes.
//!
//! This module owns what the config says about object stores: their URLs
//! (a plain path becomes an absolute `file://` URL; cloud URLs carry no
//! credentials), `[stores.options]` checked against object_store's builder
//! keys for the URL's scheme (credentials are refused there: they come from
//! the environment or the platform's identity), `[stores.retry]`,
//! `deletion_mode`, `listing_order`, `verify`, `max_in_flight`, the test-only `[stores.inject_faults]`,
//! and where the certificate destination lies relative to each store (beside
//! it or inside it, never its root or around it). It builds no client: that
//! is `store`'s job.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::{RawFaults, RawOptions, RawRetry, RawStore};
use super::{Certificates, Result, Source, redact_url};

/// The largest `max_in_flight` a store accepts.
pub const MAX_IN_FLIGHT: usize = 64;
/// Batches deleting at once per store when the config does not say.
pub const DEFAULT_IN_FLIGHT: usize = 4;

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
    /// `verify`: how absence after a delete is checked; `None` leaves it
    /// to the store's kind (see `store::Verification`).
    pub verify: Option<VerifySetting>,
    /// `max_in_flight`: batches deleting at once in this store (1 to
    /// [`MAX_IN_FLIGHT`], default [`DEFAULT_IN_FLIGHT`]; see `store::Throttle`).
    pub max_in_flight: usize,
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

/// `[[stores]] verify`: how lethe checks that a deleted object is gone: a
/// listing of each batch's key range (`"listing"`, the default on S3,
/// Azure and GCS, which list consistently after a delete) or a `head` of
/// each object (`"head"`, for a store that does not, such as a multi-site
/// Ceph; always on a local folder, where it is a `stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifySetting {
    Listing,
    Head,
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
    /// In a range listing (`list_with_offset`: what absence checks ask
    /// for), the chance per entry that a present key is left out, as an
    /// eventually consistent store or a buggy gateway may list: at most one
    /// key per listing, and each key at most once per process.
    pub hide: f64,
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

/// `[[stores]]`, checked in the order written: at least one, each name
/// given once, each store's settings valid. `certificates_prefix` is left
/// for [`nest_certificates`], once the destination is known.
pub(super) fn stores(
    source: &Source<'_>,
    base: &Path,
    raw: Vec<Spanned<RawStore>>,
) -> Result<Vec<StoreConfig>> {
    if raw.is_empty() {
        return Err(source.invalid("no [[stores]] configured".into()));
    }
    let mut stores: Vec<StoreConfig> = Vec::new();
    for store in raw {
        let span = store.span();
        let store = store.into_inner();
        let name = store.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(source.at(store.name.span(), "store name must not be empty".into()));
        }
        if stores.iter().any(|s| s.name == name) {
            return Err(source.at(span, format!("store name {name:?} is used twice")));
        }
        stores.push(store_config(source, base, name, &store)?);
    }
    Ok(stores)
}

/// One `[[stores]]` table, its name already checked.
fn store_config(
    source: &Source<'_>,
    base: &Path,
    name: String,
    store: &RawStore,
) -> Result<StoreConfig> {
    let url =
        resolve_store_url(base, store.url.get_ref()).map_err(|m| source.at(store.url.span(), m))?;
    let options = store_options(source, &url, &store.options)?;
    let retry = retry_settings(source, store.retry.as_ref())?;
    let deletion_mode = match &store.deletion_mode {
        None => None,
        Some(m) => Some(DeletionMode::parse(m.get_ref()).ok_or_else(|| {
            source.at(m.span(), format!("deletion_mode must be \"permanent\", \"delete-marker\" or \"soft-deleted\", not {:?}", m.get_ref()))
        })?),
    };
    let faults = match &store.inject_faults {
        None => None,
        Some(f) => Some(Box::new(
            fault_settings(&url, f.get_ref()).map_err(|m| source.at(f.span(), m))?,
        )),
    };
    let listing_order = match &store.listing_order {
        None => None,
        Some(o) => Some(listing_order(&url, o.get_ref()).map_err(|m| source.at(o.span(), m))?),
    };
    let verify = match &store.verify {
        None => None,
        Some(v) => Some(verify_setting(&url, v.get_ref()).map_err(|m| source.at(v.span(), m))?),
    };
    let max_in_flight = match &store.max_in_flight {
        None => DEFAULT_IN_FLIGHT,
        Some(n) => {
            let max = MAX_IN_FLIGHT;
            match usize::try_from(*n.get_ref()) {
                Ok(v) if (1..=max).contains(&v) => v,
                _ => {
                    return Err(source.at(
                        n.span(),
                        format!(
                            "max_in_flight must be a whole number from 1 to {max} (batches deleting at once in this store), not {}",
                            n.get_ref()
                        ),
                    ));
                }
            }
        }
    };
    Ok(StoreConfig {
        name,
        url,
        options,
        retry,
        deletion_mode,
        faults,
        listing_order,
        verify,
        max_in_flight,
        certificates_prefix: None,
    })
}

/// `certificates` (with `certificates_options` and `certificates_retry`):
/// a folder relative to the config's, or an object-store URL. A `file://`
/// URL is a folder too; options apply only to an object store.
pub(super) fn certificates(
    source: &Source<'_>,
    base: &Path,
    certificates: &str,
    options: &RawOptions,
    retry: Option<&RawRetry>,
    faults: Option<&Spanned<RawFaults>>,
) -> Result<Certificates> {
    let folder_faults = || match faults {
        Some(f) => Err(source.at(
            f.span(),
            "[certificates_inject_faults] applies only when certificates is an object-store URL"
                .into(),
        )),
        None => Ok(()),
    };
    if !certificates.contains("://") {
        folder_faults()?;
        if let Some((key, _)) = options.iter().next() {
            return Err(source.at(
                key.span(),
                "[certificates_options] applies only when certificates is an object-store URL"
                    .into(),
            ));
        }
        return Ok(Certificates::Folder(base.join(certificates)));
    }
    let url = resolve_store_url(base, certificates)
        .map_err(|message| source.invalid(format!("certificates: {message}")))?;
    let options = store_options(source, &url, options)?;
    let retry = retry_settings(source, retry)?;
    if url.starts_with("file://") {
        folder_faults()?;
        return Ok(Certificates::Folder(
            url::Url::parse(&url)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .unwrap_or_default(),
        ));
    }
    let faults = match faults {
        None => None,
        Some(f) => Some(Box::new(
            fault_settings(&url, f.get_ref()).map_err(|m| source.at(f.span(), m))?,
        )),
    };
    Ok(Certificates::Store(StoreConfig {
        name: "certificates".into(),
        url,
        options,
        retry,
        deletion_mode: None,
        faults,
        listing_order: None,
        verify: None,
        max_in_flight: DEFAULT_IN_FLIGHT,
        certificates_prefix: None,
    }))
}

/// Sets each store's `certificates_prefix`, refusing a destination that is
/// a store's root or contains a store.
pub(super) fn nest_certificates(
    source: &Source<'_>,
    stores: &mut [StoreConfig],
    certificates: &Certificates,
) -> Result<()> {
    for store in stores {
        store.certificates_prefix =
            certificates_within(store, certificates).map_err(|message| source.invalid(message))?;
    }
    Ok(())
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
    source: &Source<'_>,
    url: &str,
    raw: &RawOptions,
) -> Result<Vec<(String, String)>> {
    let scheme = url.split_once("://").map_or("file", |(s, _)| s);
    let mut options = Vec::new();
    for (key, value) in raw {
        check_store_option(scheme, key.get_ref()).map_err(|m| source.at(key.span(), m))?;
        let text = match value.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => {
                return Err(source.at(
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
fn retry_settings(source: &Source<'_>, raw: Option<&RawRetry>) -> Result<RetrySettings> {
    let Some(r) = raw else {
        return Ok(RetrySettings::default());
    };
    let duration = |d: &Option<Spanned<String>>| -> Result<Option<std::time::Duration>> {
        d.as_ref()
            .map(|d| {
                humantime::parse_duration(d.get_ref().trim()).map_err(|e| {
                    source.at(
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
        return Err(source.at(b.span(), "backoff_base must be greater than 1".into()));
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

/// `verify`, checked: a local folder is always checked with a `stat` per
/// file, so `"listing"` is refused there rather than silently not done.
fn verify_setting(url: &str, value: &str) -> std::result::Result<VerifySetting, String> {
    match value {
        "head" => Ok(VerifySetting::Head),
        "listing" if url.starts_with("file:") => Err(
            "verify = \"listing\" is for object stores: a local folder's deletions are checked with a stat of each file (leave verify out, or say \"head\")".into(),
        ),
        "listing" => Ok(VerifySetting::Listing),
        other => Err(format!(
            "verify must be \"listing\" or \"head\", not {other:?}"
        )),
    }
}

/// `[stores.inject_faults]`, checked: chances between 0 and 1 that add up
/// to at most 1 per request. On a local folder the faults are a disk's
/// (reads, checks and deletes; the walk itself is not faulted, and
/// `reorder` and `hide` do not apply to it).
fn fault_settings(url: &str, f: &RawFaults) -> std::result::Result<FaultSettings, String> {
    if url.starts_with("file:") && f.reorder > 0 {
        return Err(
            "inject_faults.reorder applies to object-store URLs (s3, az, gs): a local folder's walk is not reordered".into(),
        );
    }
    if url.starts_with("file:") && f.hide > 0.0 {
        return Err(
            "inject_faults.hide applies to object-store URLs (s3, az, gs): a local folder is checked with a stat of each file, never a range listing".into(),
        );
    }
    let chances = [
        ("error", f.error),
        ("throttle", f.throttle),
        ("timeout", f.timeout),
        ("lost_reply", f.lost_reply),
        ("slow", f.slow),
        ("partial", f.partial),
        ("hide", f.hide),
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
        hide: f.hide,
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

#[cfg(test)]
mod tests {
    use super::super::testing::{MINIMAL, parse};
    use super::*;

    #[test]
    fn verify_is_checked_and_listing_is_refused_on_a_folder() {
        let store = |url: &str, line: &str| {
            parse(&format!(
                "[signing]\nkey_id = \"k1\"\n[[stores]]\nname = \"r\"\nurl = \"{url}\"\n{line}"
            ))
        };
        assert_eq!(parse(MINIMAL).unwrap().stores[0].verify, None);
        let s = store("s3://b/calls", "verify = \"head\"\n").unwrap();
        assert_eq!(s.stores[0].verify, Some(VerifySetting::Head));
        let s = store("gs://b", "verify = \"listing\"\n").unwrap();
        assert_eq!(s.stores[0].verify, Some(VerifySetting::Listing));
        let err = store("s3://b", "verify = \"list\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":6:10: verify must be \"listing\" or \"head\""),
            "{err}"
        );
        let err = store("recordings", "verify = \"listing\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a local folder's deletions are checked with a stat"),
            "{err}"
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
