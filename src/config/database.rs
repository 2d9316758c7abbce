//! The ledger's database URL: where it comes from and how it is shown.
//!
//! This module owns [`DatabaseUrl`] (a [`Secret`] that can be printed with its
//! password removed), [`redact_url`], and the step of [`Settings`](super::Settings)
//! that picks the URL: `database` in `lethe.toml` (a SQLite file relative to
//! the config's folder, or a PostgreSQL URL), unless `LETHE_DATABASE` or
//! `LETHE_DATABASE_FILE` (a mounted Secret) overrides it. A SQLite URL is
//! made absolute and opened with `mode=rwc`; an in-memory ledger is refused,
//! because it would forget every deletion.

use std::path::Path;

use super::secrets::Secret;
use super::{ConfigError, ENV_DATABASE, ENV_DATABASE_FILE, EnvOverrides, Result, Source};

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

/// The ledger's URL: the environment's if it gives one (relative SQLite
/// paths then resolve against the working directory, as a shell user
/// expects), else the config's `database` (relative to `base`, the config's
/// folder). Errors name the variable or the config file the URL came from.
pub(super) fn database(
    source: &Source<'_>,
    base: &Path,
    configured: &str,
    env: &EnvOverrides,
) -> Result<DatabaseUrl> {
    let from_env = database_from_env(env)?;
    match &from_env {
        Some((_, url)) => resolve_database(&std::env::current_dir().unwrap_or_default(), url),
        None => resolve_database(base, configured),
    }
    .map_err(|message| match &from_env {
        Some((var, _)) => ConfigError::Env { var, message },
        None => source.invalid(format!("database: {message}")),
    })
}

/// `LETHE_DATABASE`, or the contents of the file `LETHE_DATABASE_FILE`
/// names, with the variable it came from; `None` when neither is set.
fn database_from_env(env: &EnvOverrides) -> Result<Option<(&'static str, String)>> {
    match (&env.database, &env.database_file) {
        (Some(_), Some(_)) => Err(ConfigError::Env {
            var: ENV_DATABASE_FILE,
            message: format!("set {ENV_DATABASE} or {ENV_DATABASE_FILE}, not both"),
        }),
        (Some(url), None) => Ok(Some((ENV_DATABASE, url.clone()))),
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
            Ok(Some((ENV_DATABASE_FILE, url)))
        }
        (None, None) => Ok(None),
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::testing::MINIMAL;
    use super::super::{EnvOverrides, Settings};
    use super::*;

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
    fn redaction() {
        assert_eq!(
            redact_url("postgres://user:secret@host:5432/db?sslmode=require"),
            "postgres://***@host:5432/db"
        );
        assert_eq!(redact_url("file:///var/lib/x"), "file:///var/lib/x");
    }
}
