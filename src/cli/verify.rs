//! `lethe verify CERT` and `lethe ledger verify`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use super::{Exit, Failure, OrExit, Outcome, output_error, resolve_settings};
use crate::certificate::{self, Check, dsse};
use crate::config::Args;
use crate::pass::Destination;

fn print_check(out: &mut dyn Write, name: &str, check: &Check) -> std::io::Result<()> {
    match check {
        Check::Pass(m) => writeln!(out, "  ok    {name}: {m}"),
        Check::Fail(m) => writeln!(out, "  FAIL  {name}: {m}"),
        Check::Skip(m) => writeln!(out, "  skip  {name}: {m}"),
    }
}

/// What `lethe verify` is asked to check beyond the certificate itself.
pub(crate) struct Options<'a> {
    pub public_key: Option<&'a Path>,
    pub check_store: bool,
    pub proof: Option<&'a Path>,
    /// A missing previous certificate is accepted (the verdict still says so).
    pub allow_missing_previous: bool,
}

pub(crate) async fn verify(
    cert: &Path,
    options: Options<'_>,
    args: &Args,
    out: &mut dyn Write,
) -> Outcome {
    let Options {
        public_key,
        check_store,
        proof,
        allow_missing_previous,
    } = options;
    let remote = cert.to_string_lossy().contains("://");
    let settings = if public_key.is_none() || check_store || remote {
        Some(resolve_settings(args))
    } else {
        None
    };
    let key_path = match (public_key, &settings) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(Ok(s))) => dsse::public_key_path(&s.signing.key_path),
        (None, Some(Err(_)) | None) => {
            return Err(Failure {
                exit: Exit::Usage,
                error: anyhow!(
                    "no public key: pass --public-key FILE, or a config (--config / $LETHE_CONFIG / ./lethe.toml) whose signing key has a .pub beside it"
                ),
            });
        }
    };
    let key = dsse::load_public_key(&key_path).or_exit(Exit::Usage)?;
    // A certificate in the configured object store is fetched, with its
    // manifest and predecessor, into a temporary folder and checked there.
    let staging = tempfile::tempdir()
        .context("cannot create a temporary folder")
        .or_exit(Exit::Runtime)?;
    let (local, remote_base) = match (&settings, remote) {
        (Some(Ok(s)), true) => {
            let (local, base) = fetch_remote(cert, s, staging.path()).await?;
            (local, Some(base))
        }
        (Some(Err(_)), true) => {
            return Err(settings.and_then(Result::err).expect("an error was loaded"));
        }
        _ => (cert.to_path_buf(), None),
    };
    // Files fetched into the temporary folder are named by their URL.
    let show = |p: &Path| match (&remote_base, p.strip_prefix(staging.path())) {
        (Some(base), Ok(name)) => format!("{base}/{}", name.display()),
        _ => p.display().to_string(),
    };
    let verification = certificate::verify_showing(&local, &key, &show);
    let mut checks = verification.checks.clone();
    if let Some(proof_path) = proof {
        let check = match (&verification.payload, read_proof(proof_path)) {
            (Some(payload), Ok(p)) => {
                // With a proof, the manifest is not needed: its absence is no finding.
                checks.retain(|(name, c)| !(*name == "manifest" && matches!(c, Check::Skip(_))));
                certificate::check_proof(&local, payload, &p)
            }
            (None, _) => Check::Fail("the certificate itself did not verify".into()),
            (_, Err(e)) => Check::Fail(e),
        };
        checks.push(("proof", check));
    }

    if check_store {
        let settings = match settings {
            Some(Ok(s)) => s,
            Some(Err(f)) => return Err(f),
            None => unreachable!("settings are loaded when --check-store is given"),
        };
        checks.push((
            "stores",
            crate::pass::check_absence(&local, &settings).await,
        ));
    }

    writeln!(out, "certificate {}", cert.display()).map_err(output_error)?;
    for (name, check) in &checks {
        print_check(out, name, check).map_err(output_error)?;
    }
    let chain_missing = verification.payload.is_some() && !verification.chain_checked();
    let failed = verification.payload.is_none()
        || checks.iter().any(|(_, c)| matches!(c, Check::Fail(_)))
        || (chain_missing && !allow_missing_previous);
    if let Some(p) = &verification.payload {
        writeln!(
            out,
            "  certifies {} objects ({} recordings, {} bytes) deleted by run {} ({} to {})",
            p.counts.items,
            p.counts.recordings_deleted,
            p.counts.bytes_deleted,
            p.run.id,
            p.window.from,
            p.window.to
        )
        .map_err(output_error)?;
    }
    let verdict = match (failed, chain_missing) {
        (true, false) => "VERIFICATION FAILED".to_string(),
        (true, true) => format!(
            "VERIFICATION FAILED: {} (--allow-missing-previous accepts that)",
            certificate::CHAIN_NOT_CHECKED
        ),
        (false, true) => format!("verified ({})", certificate::CHAIN_NOT_CHECKED),
        (false, false) => "verified".to_string(),
    };
    writeln!(out, "{verdict}").map_err(output_error)?;
    Ok(if failed {
        Exit::Verification
    } else {
        Exit::Success
    })
}

fn read_proof(path: &Path) -> Result<certificate::InclusionProof, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not an inclusion proof: {e}", path.display()))
}

/// `lethe proof CERT --key K`: prints the inclusion proof as JSON.
pub(crate) async fn proof(
    cert: &Path,
    key: &str,
    store: Option<&str>,
    args: &Args,
    out: &mut dyn Write,
) -> Outcome {
    let staging = tempfile::tempdir()
        .context("cannot create a temporary folder")
        .or_exit(Exit::Runtime)?;
    let local = if cert.to_string_lossy().contains("://") {
        let settings = resolve_settings(args)?;
        fetch_remote(cert, &settings, staging.path()).await?.0
    } else {
        cert.to_path_buf()
    };
    let proof = certificate::prove(&local, key, store).map_err(|e| Failure {
        exit: Exit::Usage,
        error: anyhow!(e),
    })?;
    serde_json::to_writer_pretty(&mut *out, &proof).map_err(|e| output_error(e.into()))?;
    writeln!(out).map_err(output_error)?;
    Ok(Exit::Success)
}

/// `lethe ledger verify`: the chain, its indexes and the certificates.
pub(crate) async fn ledger_verify(args: &Args, out: &mut dyn Write) -> Outcome {
    let settings = resolve_settings(args)?;
    let audit = crate::pass::audit_ledger(&settings)
        .await
        .or_exit(Exit::Runtime)?;
    let lines = [
        format!(
            "ledger {}: {} rows, head {}",
            settings.database.redacted(),
            audit.chain.rows,
            audit.chain.head
        ),
        format!(
            "  {} certificate anchors checked (ledger rows and files)",
            audit.anchors
        ),
        format!(
            "  {} recorded certificates looked up in {}",
            audit.recorded, audit.destination
        ),
    ];
    for line in lines
        .into_iter()
        .chain(audit.problems.iter().map(|p| format!("  FAIL  {p}")))
    {
        writeln!(out, "{line}").map_err(output_error)?;
    }
    let verdict = match audit.problems.is_empty() {
        true => "verified: the hash chain is intact",
        false => "VERIFICATION FAILED",
    };
    writeln!(out, "{verdict}").map_err(output_error)?;
    Ok(match audit.problems.is_empty() {
        true => Exit::Success,
        false => Exit::Verification,
    })
}

/// Fetches `cert` (a URL under the configured certificates store); returns
/// its local copy and the URL of the folder it came from, for messages.
async fn fetch_remote(
    cert: &Path,
    settings: &crate::config::Settings,
    dir: &Path,
) -> Result<(PathBuf, String), Failure> {
    let text = cert.to_string_lossy();
    let destination = Destination::open(settings).or_exit(Exit::Runtime)?;
    let name = match &settings.certificates {
        crate::config::Certificates::Store(c) => text
            .strip_prefix(&format!("{}/", c.url))
            .map(str::to_string),
        crate::config::Certificates::Folder(_) => None,
    };
    let Some(name) = name.filter(|n| !n.contains('/')) else {
        return Err(Failure {
            exit: Exit::Usage,
            error: anyhow!(
                "{text} is not a certificate in the configured certificates store; pass a local file or a URL under `certificates`"
            ),
        });
    };
    let local = destination
        .fetch(&name, dir)
        .await
        .or_exit(Exit::Verification)?;
    let base = destination.location("");
    Ok((local, base.trim_end_matches('/').to_string()))
}
