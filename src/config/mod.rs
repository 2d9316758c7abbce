//! `lethe.toml` and the environment, turned into validated [`Settings`].
//!
//! This module owns the configuration and nothing else: it does not read
//! policies, open stores or touch the database. [`Settings::resolve`] is the
//! one way in for every command: it finds the file (the command line's
//! [`Args`], else `LETHE_CONFIG`, else `./lethe.toml`), reads it, checks it
//! in named steps and applies the environment ([`EnvOverrides`], passed in so
//! that tests need not touch the process's). Relative paths are resolved
//! against the config file's folder so that a config means the same thing
//! whatever the working directory is, and every error names the file (with
//! line and column where a value is at fault). The file's serde shape lives
//! in `raw`, what it says of stores in `store`, the ledger's URL in
//! `database` and the wrapper that keeps secrets out of logs in `secrets`.

mod database;
mod raw;
mod secrets;
mod store;

use std::path::{Path, PathBuf};

pub use database::{DatabaseUrl, redact_url};
pub use secrets::Secret;
pub use store::{
    DEFAULT_IN_FLIGHT, DeletionMode, FaultSettings, ListingOrderSetting, MAX_IN_FLIGHT,
    RetrySettings, StoreConfig, VerifySetting, url_prefix,
};

use raw::{RawConfig, RawDaemon, RawHolds, RawSafety, RawSchedule, RawSigning};

/// The environment variable naming the config file when `--config` is absent.
pub const ENV_CONFIG: &str = "LETHE_CONFIG";
/// Overrides `database`.
pub const ENV_DATABASE: &str = "LETHE_DATABASE";
/// A file holding the database URL (a Kubernetes Secret), as an alternative to `LETHE_DATABASE`.
pub const ENV_DATABASE_FILE: &str = "LETHE_DATABASE_FILE";
/// Overrides `[signing] key` (for example a Kubernetes Secret mounted as a file).
pub const ENV_SIGNING_KEY: &str = "LETHE_SIGNING_KEY";
/// The config file when neither the command line nor `LETHE_CONFIG` names one.
pub const DEFAULT_CONFIG: &str = "lethe.toml";

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

/// What the command line says about the configuration: the parsed
/// arguments, without clap (the `cli` module fills this in).
#[derive(Clone, Debug, Default)]
pub struct Args {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
}

impl Args {
    /// Where the config file is: `--config`, else `$LETHE_CONFIG`, else `./lethe.toml`.
    pub fn locate(&self, env: &EnvOverrides) -> PathBuf {
        self.config
            .clone()
            .or_else(|| env.config.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }
}

/// Environment overrides, passed in explicitly so that tests need not touch
/// the process environment. An empty variable counts as unset.
#[derive(Clone, Debug, Default)]
pub struct EnvOverrides {
    /// `LETHE_CONFIG`: the config file when `--config` is absent.
    pub config: Option<PathBuf>,
    pub database: Option<String>,
    /// A file holding the database URL (a mounted Secret), instead of `database`.
    pub database_file: Option<PathBuf>,
    pub signing_key: Option<String>,
}

impl EnvOverrides {
    pub fn from_process() -> Self {
        let get = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        Self {
            config: get(ENV_CONFIG).map(PathBuf::from),
            database: get(ENV_DATABASE),
            database_file: get(ENV_DATABASE_FILE).map(PathBuf::from),
            signing_key: get(ENV_SIGNING_KEY),
        }
    }
}

/// The text being parsed and where it came from, so that every check can
/// name the file, and the line and column of the value at fault.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    /// An error at a value of the file (`span`: its bytes).
    fn at(&self, span: std::ops::Range<usize>, message: String) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::At {
            path: self.path.into(),
            line,
            column,
            message,
        }
    }

    /// An error of the file as a whole (a missing table, a contradiction).
    fn invalid(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.into(),
            message,
        }
    }

    /// The file as serde reads it; a syntax error or an unknown key names its place.
    fn raw(&self) -> Result<RawConfig> {
        toml::from_str(self.text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_column(self.text, s.start))
                .unwrap_or((1, 1));
            ConfigError::At {
                path: self.path.into(),
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })
    }

    /// The config file's folder, absolute: what relative paths in it mean.
    fn base(&self) -> PathBuf {
        let base = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        std::path::absolute(&base).unwrap_or(base)
    }
}

impl Settings {
    /// The settings every command runs with: the config file that `args`
    /// or the environment name (else `./lethe.toml`), read, checked, and
    /// overridden by the environment.
    pub fn resolve(args: &Args, env: &EnvOverrides) -> Result<Self> {
        Self::load(&args.locate(env), env)
    }

    /// Reads and validates the config file at `path`, then applies the environment.
    pub fn load(path: &Path, env: &EnvOverrides) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text, env)
    }

    /// Validates the text of the config file at `path`, then applies the
    /// environment. The steps run in the order that decides which error a
    /// file with several is reported with.
    pub fn parse(path: &Path, text: &str, env: &EnvOverrides) -> Result<Self> {
        let source = Source { path, text };
        let raw = source.raw()?;
        let base = source.base();
        let max_fraction = max_fraction(&source, &raw.safety)?;
        let release_approvals = release_approvals(&source, raw.holds.as_ref())?;
        let schedule = schedule(&source, raw.schedule.as_ref())?;
        let daemon_listen = daemon_listen(&source, raw.daemon.as_ref())?;
        let safety = Safety {
            max_deletions: raw.safety.max_deletions,
            max_fraction,
            max_clock_skew: duration(
                &source,
                raw.safety.max_clock_skew.as_ref(),
                "max_clock_skew",
                "5m",
            )?
            .unwrap_or(std::time::Duration::from_secs(300)),
            shard_wait: duration(&source, raw.safety.shard_wait.as_ref(), "shard_wait", "10m")?
                .unwrap_or(std::time::Duration::from_secs(600)),
        };
        let signing = signing(&source, &base, raw.signing, env)?;
        let mut stores = store::stores(&source, &base, raw.stores)?;
        let certificates = store::certificates(
            &source,
            &base,
            &raw.certificates,
            &raw.certificates_options,
            raw.certificates_retry.as_ref(),
            raw.certificates_inject_faults.as_ref(),
        )?;
        store::nest_certificates(&source, &mut stores, &certificates)?;
        let database = database::database(&source, &base, &raw.database, env)?;
        Ok(Settings {
            config_path: path.to_path_buf(),
            policies_dir: base.join(&raw.policies),
            database,
            certificates,
            signing,
            safety,
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

/// `[safety] max_fraction`, a share between 0 and 1.
fn max_fraction(source: &Source<'_>, safety: &RawSafety) -> Result<f64> {
    match &safety.max_fraction {
        Some(f) if !(0.0..=1.0).contains(f.get_ref()) => Err(source.at(
            f.span(),
            format!("max_fraction must be between 0 and 1, got {}", f.get_ref()),
        )),
        Some(f) => Ok(*f.get_ref()),
        None => Ok(raw::default_max_fraction()),
    }
}

/// `[holds] release_approvals`, between 1 and 10 (1 when absent).
fn release_approvals(source: &Source<'_>, holds: Option<&RawHolds>) -> Result<usize> {
    match holds.and_then(|h| h.release_approvals.as_ref()) {
        Some(n) if (1..=10).contains(n.get_ref()) => Ok(*n.get_ref() as usize),
        Some(n) => Err(source.at(
            n.span(),
            format!(
                "release_approvals must be between 1 and 10, got {}",
                n.get_ref()
            ),
        )),
        None => Ok(1),
    }
}

/// `[schedule] cron`, checked the way the daemon's scheduler reads it.
fn schedule(source: &Source<'_>, schedule: Option<&RawSchedule>) -> Result<Option<String>> {
    let Some(s) = schedule else {
        return Ok(None);
    };
    let cron = s.cron.get_ref().trim();
    parse_cron(cron).map_err(|e| source.at(s.cron.span(), e))?;
    Ok(Some(cron.to_string()))
}

/// `[daemon] listen`, an address and port (loopback port 9464 when absent).
fn daemon_listen(source: &Source<'_>, daemon: Option<&RawDaemon>) -> Result<std::net::SocketAddr> {
    match daemon.and_then(|d| d.listen.as_ref()) {
        Some(l) => l.get_ref().parse().map_err(|_| {
            source.at(
                l.span(),
                format!(
                    "listen {:?} is not an address like 127.0.0.1:9464",
                    l.get_ref()
                ),
            )
        }),
        None => Ok(std::net::SocketAddr::from(([127, 0, 0, 1], 9464))),
    }
}

/// A `[safety]` duration such as `max_clock_skew = "5m"`; `example` is shown when it is not one.
fn duration(
    source: &Source<'_>,
    value: Option<&toml::Spanned<String>>,
    name: &str,
    example: &str,
) -> Result<Option<std::time::Duration>> {
    value
        .map(|s| {
            humantime::parse_duration(s.get_ref().trim()).map_err(|e| {
                source.at(
                    s.span(),
                    format!("{name}: expected a duration like \"{example}\": {e}"),
                )
            })
        })
        .transpose()
}

/// `[signing]`, required: the key (relative to the config's folder, or
/// `LETHE_SIGNING_KEY`) and its id, which must not be empty.
fn signing(
    source: &Source<'_>,
    base: &Path,
    signing: Option<RawSigning>,
    env: &EnvOverrides,
) -> Result<Signing> {
    let Some(s) = signing else {
        return Err(source.invalid("missing [signing] table with key_id (and key)".into()));
    };
    if s.key_id.get_ref().trim().is_empty() {
        return Err(source.at(s.key_id.span(), "key_id must not be empty".into()));
    }
    let key_path = match &env.signing_key {
        Some(k) => PathBuf::from(k),
        None => base.join(&s.key),
    };
    Ok(Signing {
        key_path,
        key_id: s.key_id.into_inner(),
    })
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

/// What the tests of this module and its children parse: a config path and text.
#[cfg(test)]
mod testing {
    use super::*;

    /// The smallest valid config: a signing key id and one local store.
    pub(super) const MINIMAL: &str = r#"
[signing]
key_id = "k1"
[[stores]]
name = "recordings"
url = "recordings"
"#;

    /// Parses `text` as `/etc/lethe/lethe.toml`, without environment overrides.
    pub(super) fn parse(text: &str) -> Result<Settings> {
        Settings::parse(
            Path::new("/etc/lethe/lethe.toml"),
            text,
            &EnvOverrides::default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{MINIMAL, parse};
    use super::*;

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
    fn the_config_file_is_the_argument_then_the_environment_then_lethe_toml() {
        let args = |p: Option<&str>| Args {
            config: p.map(PathBuf::from),
        };
        let env = |p: Option<&str>| EnvOverrides {
            config: p.map(PathBuf::from),
            ..Default::default()
        };
        let cases = [
            (Some("/a.toml"), Some("/b.toml"), "/a.toml"),
            (Some("/a.toml"), None, "/a.toml"),
            (None, Some("/b.toml"), "/b.toml"),
            (None, None, "lethe.toml"),
        ];
        for (arg, var, expected) in cases {
            assert_eq!(
                args(arg).locate(&env(var)),
                PathBuf::from(expected),
                "{arg:?} {var:?}"
            );
        }
    }

    #[test]
    fn resolve_reads_the_located_file_and_names_it_when_it_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("from-env.toml");
        std::fs::write(&file, MINIMAL).unwrap();
        let env = EnvOverrides {
            config: Some(file.clone()),
            ..Default::default()
        };
        let s = Settings::resolve(&Args::default(), &env).unwrap();
        assert_eq!(s.config_path, file);
        assert_eq!(s.policies_dir, dir.path().join("policies"));
        let missing = Args {
            config: Some(dir.path().join("nope.toml")),
        };
        let err = Settings::resolve(&missing, &env).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot read config file {}",
                dir.path().join("nope.toml").display()
            )),
            "{err}"
        );
    }
}
