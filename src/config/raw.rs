//! `lethe.toml` as written: the serde types the file is read into.
//!
//! This module owns the file's shape and its defaults, nothing more: every
//! table is `deny_unknown_fields`, because a misspelt `max_fracton` must
//! never silently turn a safety limit off, and values that need checking
//! (ranges, durations, URLs) are kept [`toml::Spanned`] so that the checks in
//! the sibling modules can name the line and column of a bad value.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `[stores.options]` and `certificates_options`: builder keys and their values, as spelt.
pub(super) type RawOptions = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default = "default_policies")]
    pub policies: String,
    #[serde(default = "default_database")]
    pub database: String,
    #[serde(default = "default_certificates")]
    pub certificates: String,
    /// Options of the certificates' object store, when `certificates` is a URL.
    #[serde(default)]
    pub certificates_options: RawOptions,
    #[serde(default)]
    pub certificates_retry: Option<RawRetry>,
    /// For testing only: faults in front of the certificates' object store.
    #[serde(default)]
    pub certificates_inject_faults: Option<Spanned<RawFaults>>,
    pub signing: Option<RawSigning>,
    #[serde(default)]
    pub safety: RawSafety,
    #[serde(default)]
    pub stores: Vec<Spanned<RawStore>>,
    #[serde(default)]
    pub holds: Option<RawHolds>,
    #[serde(default)]
    pub schedule: Option<RawSchedule>,
    #[serde(default)]
    pub daemon: Option<RawDaemon>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    pub cron: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHolds {
    pub release_approvals: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigning {
    #[serde(default = "default_key")]
    pub key: String,
    pub key_id: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSafety {
    #[serde(default = "default_max_deletions")]
    pub max_deletions: u64,
    #[serde(default)]
    pub max_fraction: Option<Spanned<f64>>,
    #[serde(default)]
    pub max_clock_skew: Option<Spanned<String>>,
    #[serde(default)]
    pub shard_wait: Option<Spanned<String>>,
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
pub(super) struct RawStore {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    #[serde(default)]
    pub options: RawOptions,
    #[serde(default)]
    pub retry: Option<RawRetry>,
    #[serde(default)]
    pub deletion_mode: Option<Spanned<String>>,
    #[serde(default)]
    pub inject_faults: Option<Spanned<RawFaults>>,
    #[serde(default)]
    pub listing_order: Option<Spanned<String>>,
    #[serde(default)]
    pub verify: Option<Spanned<String>>,
    #[serde(default)]
    pub max_in_flight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFaults {
    pub seed: u64,
    #[serde(default)]
    pub error: f64,
    #[serde(default)]
    pub throttle: f64,
    #[serde(default)]
    pub timeout: f64,
    #[serde(default)]
    pub lost_reply: f64,
    #[serde(default)]
    pub slow: f64,
    #[serde(default)]
    pub partial: f64,
    #[serde(default)]
    pub delay: Option<String>,
    #[serde(default)]
    pub reorder: usize,
    #[serde(default)]
    pub hide: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub max_retries: Option<usize>,
    pub retry_timeout: Option<Spanned<String>>,
    pub init_backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
    pub backoff_base: Option<Spanned<f64>>,
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
/// `[safety] max_fraction` when the file does not set it.
pub(super) fn default_max_fraction() -> f64 {
    0.5
}
