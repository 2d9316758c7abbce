//! `lethe verify CERT` and `lethe ledger verify`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use futures::StreamExt;

use super::certify::Destination;
use super::{Exit, Failure, OrExit, Outcome, output_error, resolve_settings};
use crate::certificate::{self, Check, dsse};
use crate::config::Args;
use crate::ledger::{self, Ledger};
use crate::store::Store;

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
        checks.push(("stores", check_absence(&local, &settings).await));
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

/// Every manifest entry must be absent from its store now.
async fn check_absence(cert: &Path, settings: &crate::config::Settings) -> Check {
    let manifest = certificate::manifest_path_for(cert);
    let entries = match certificate::read_manifest(&manifest) {
        Ok(e) => e,
        Err(e) => return Check::Fail(format!("--check-store needs the manifest: {e}")),
    };
    let mut stores: HashMap<String, Option<Store>> = HashMap::new();
    let (mut checked, mut present, mut errors) = (0u64, Vec::new(), Vec::new());
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return Check::Fail(format!("manifest: {e}")),
        };
        let store = stores
            .entry(entry.store.clone())
            .or_insert_with(|| {
                settings
                    .store(&entry.store)
                    .and_then(|sc| super::open_store(settings, sc).ok())
            })
            .clone();
        let Some(store) = store else {
            errors.push(format!(
                "store {} is not configured or cannot be opened",
                entry.store
            ));
            break;
        };
        match store.head(&entry.key).await {
            Ok(None) => checked += 1,
            Ok(Some(_)) => present.push(format!("{}: {}", entry.store, entry.key)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !present.is_empty() {
        let sample: Vec<_> = present.iter().take(10).cloned().collect();
        return Check::Fail(format!(
            "{} certified objects still exist: {}",
            present.len(),
            sample.join("; ")
        ));
    }
    if !errors.is_empty() {
        return Check::Fail(format!(
            "absence could not be checked: {}",
            errors.join("; ")
        ));
    }
    Check::Pass(format!(
        "{checked} certified objects are absent from their stores"
    ))
}

pub(crate) async fn ledger_verify(args: &Args, out: &mut dyn Write) -> Outcome {
    let settings = resolve_settings(args)?;
    if let Some(path) = ledger::sqlite_path(&settings.database)
        && !path.exists()
    {
        return Err(Failure {
            exit: Exit::Runtime,
            error: anyhow!("there is no ledger at {}", path.display()),
        });
    }
    let ledger = Ledger::open(&settings.database)
        .await
        .or_exit(Exit::Runtime)?;
    let report = ledger.verify().await.or_exit(Exit::Runtime)?;
    let mut problems = report.problems.clone();
    problems.extend(ledger.verify_holds().await.or_exit(Exit::Runtime)?);

    // Certificates pin the ledger: a row removed from the end of the chain,
    // where no later row links to it, still shows against them.
    let mut certs = ledger.rows_of_kind(ledger::kind::CERTIFICATE, 1, i64::MAX);
    let mut listed: Vec<(u64, i64, String)> = Vec::new();
    // (sequence, certificate file, its SHA-256, manifest file) as recorded.
    let mut recorded: Vec<(u64, String, String, String)> = Vec::new();
    while let Some(row) = certs.next().await {
        let row = row.or_exit(Exit::Runtime)?;
        if let Ok(body) = row.body_json() {
            let p = &body["payload"]["ledger"];
            let sequence = body["sequence"].as_u64().unwrap_or(0);
            listed.push((
                sequence,
                p["last_seq"].as_i64().unwrap_or(0),
                p["last_row_sha256"].as_str().unwrap_or("").to_string(),
            ));
            let text = |k: &str| body[k].as_str().unwrap_or("").to_string();
            recorded.push((
                sequence,
                text("certificate_file"),
                text("certificate_sha256"),
                text("manifest_file"),
            ));
        }
    }
    drop(certs);
    let destination = Destination::open(&settings).or_exit(Exit::Runtime)?;
    let in_destination = destination
        .certificates()
        .await
        .context("cannot read the certificates")
        .or_exit(Exit::Runtime)?;
    // Every certificate the ledger records must be in the destination, unchanged.
    let hashes: HashMap<&str, String> = in_destination
        .iter()
        .map(|(name, bytes)| (name.as_str(), certificate::sha256_hex(bytes)))
        .collect();
    for (sequence, file, sha256, manifest) in &recorded {
        match hashes.get(file.as_str()) {
            None => problems.push(format!(
                "certificate #{sequence} is recorded in the ledger but {} is missing (the next run rebuilds the last certificate's files; an earlier one is lost)",
                destination.location(file)
            )),
            Some(found) if found != sha256 => problems.push(format!(
                "certificate #{sequence} at {} has SHA-256 {found}, the ledger records {sha256}",
                destination.location(file)
            )),
            Some(_) => {}
        }
        if !destination
            .contains(manifest)
            .await
            .context("cannot read the certificates")
            .or_exit(Exit::Runtime)?
        {
            problems.push(format!(
                "certificate #{sequence}'s manifest {} is missing",
                destination.location(manifest)
            ));
        }
    }
    // ... and every certificate in the destination must be one the ledger
    // records: a removed last row (the newest certificate's) shows here.
    for (name, _) in &in_destination {
        if !recorded.iter().any(|(_, file, _, _)| file == name) {
            problems.push(format!(
                "{} is in the destination but the ledger does not record it (ledger rows were removed, or it is another ledger's)",
                destination.location(name)
            ));
        }
    }
    let files = in_destination
        .into_iter()
        .filter_map(|(_, bytes)| anchor(&bytes))
        .collect::<Vec<_>>();
    let anchors: std::collections::BTreeSet<(u64, i64, String)> =
        listed.into_iter().chain(files).collect();
    for (sequence, last_seq, hash) in anchors.iter().cloned() {
        match ledger.row(last_seq).await.or_exit(Exit::Runtime)? {
            Some(row) if row.hash == hash => {}
            Some(_) => problems.push(format!("certificate #{sequence} pins ledger row {last_seq} with another hash (the row was changed)")),
            None => problems.push(format!("certificate #{sequence} pins ledger row {last_seq}, which is missing (rows were removed)")),
        }
    }
    ledger.close().await;

    writeln!(
        out,
        "ledger {}: {} rows, head {}",
        settings.database.redacted(),
        report.rows,
        report.head
    )
    .map_err(output_error)?;
    writeln!(
        out,
        "  {} certificate anchors checked (ledger rows and files)",
        anchors.len()
    )
    .map_err(output_error)?;
    writeln!(
        out,
        "  {} recorded certificates looked up in {}",
        recorded.len(),
        destination.location("").trim_end_matches('/')
    )
    .map_err(output_error)?;
    for p in &problems {
        writeln!(out, "  FAIL  {p}").map_err(output_error)?;
    }
    writeln!(
        out,
        "{}",
        if problems.is_empty() {
            "verified: the hash chain is intact"
        } else {
            "VERIFICATION FAILED"
        }
    )
    .map_err(output_error)?;
    Ok(if problems.is_empty() {
        Exit::Success
    } else {
        Exit::Verification
    })
}

/// `(sequence, last_seq, last_row_sha256)` of a certificate file, read
/// without checking its signature (`verify` does that).
fn anchor(bytes: &[u8]) -> Option<(u64, i64, String)> {
    use base64::Engine;
    let env = serde_json::from_slice::<certificate::Envelope>(bytes).ok()?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&env.payload)
        .ok()?;
    let p = serde_json::from_slice::<certificate::Payload>(&payload).ok()?;
    Some((p.sequence, p.ledger.last_seq, p.ledger.last_row_sha256))
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
