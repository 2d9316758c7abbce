//! The evidence checked after the fact: `lethe ledger verify` (the hash
//! chain, the indexes derived from it, and the ledger against the
//! certificates in the destination, both ways) and `lethe verify
//! --check-store` (every certified object is absent from its store now).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::Deserialize;

use super::certify::CertifyError;
use super::destination::Destination;
use crate::certificate::{self, Check};
use crate::config::Settings;
use crate::ledger::{self, ChainReport, Ledger, LedgerError};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("there is no ledger at {}", .0.display())]
    NoLedger(PathBuf),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Destination(CertifyError),
    #[error("cannot read the certificates")]
    Certificates(#[source] CertifyError),
}

/// What `ledger verify` found.
#[derive(Debug)]
pub struct LedgerAudit {
    pub chain: ChainReport,
    /// Certificate anchors checked (from ledger rows and from files).
    pub anchors: usize,
    /// Certificates the ledger records, looked up in the destination.
    pub recorded: usize,
    /// Where the destination is, for people.
    pub destination: String,
    /// Everything that does not hold, the chain's own findings first.
    pub problems: Vec<String>,
}

/// A certificate as its ledger row records it: the fields the audit
/// compares (read leniently: a row that does not parse is the chain
/// check's finding, not this one's).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Recorded {
    sequence: u64,
    certificate_file: String,
    certificate_sha256: String,
    manifest_file: String,
    payload: RecordedPayload,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RecordedPayload {
    ledger: Anchor,
}

/// The ledger row a certificate pins.
#[derive(Debug, Default, Deserialize, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[serde(default)]
struct Anchor {
    last_seq: i64,
    last_row_sha256: String,
}

/// Checks the ledger's hash chain, its derived indexes, and the ledger
/// against the certificates in the destination: every certificate it
/// records is there unchanged with its manifest, every certificate there
/// is one it records, and every row a certificate pins is in the chain
/// with the hash the certificate states.
pub async fn audit_ledger(settings: &Settings) -> Result<LedgerAudit, AuditError> {
    if let Some(path) = ledger::sqlite_path(&settings.database)
        && !path.exists()
    {
        return Err(AuditError::NoLedger(path));
    }
    let ledger = Ledger::open(&settings.database).await?;
    let result = audit_open(&ledger, settings).await;
    ledger.close().await;
    result
}

async fn audit_open(ledger: &Ledger, settings: &Settings) -> Result<LedgerAudit, AuditError> {
    let chain = ledger.verify().await?;
    let mut problems = chain.problems.clone();
    problems.extend(ledger.verify_indexes().await?);
    let recorded = recorded_certificates(ledger).await?;
    let destination = Destination::open(settings).map_err(AuditError::Destination)?;
    let in_destination = destination
        .certificates()
        .await
        .map_err(AuditError::Certificates)?;
    problems.extend(compare(&destination, &recorded, &in_destination).await?);
    // Certificates pin the ledger: a row removed from the end of the chain,
    // where no later row links to it, still shows against them.
    let anchors: BTreeSet<(u64, Anchor)> = recorded
        .iter()
        .map(|r| (r.sequence, r.payload.ledger.clone()))
        .chain(in_destination.iter().filter_map(|(_, b)| file_anchor(b)))
        .collect();
    for (sequence, anchor) in &anchors {
        let last_seq = anchor.last_seq;
        match ledger.row(last_seq).await? {
            Some(row) if row.hash == anchor.last_row_sha256 => {}
            Some(_) => problems.push(format!("certificate #{sequence} pins ledger row {last_seq} with another hash (the row was changed)")),
            None => problems.push(format!("certificate #{sequence} pins ledger row {last_seq}, which is missing (rows were removed)")),
        }
    }
    Ok(LedgerAudit {
        chain,
        anchors: anchors.len(),
        recorded: recorded.len(),
        destination: destination.location("").trim_end_matches('/').to_string(),
        problems,
    })
}

/// Every certificate row of the ledger, as far as it can be read.
async fn recorded_certificates(ledger: &Ledger) -> Result<Vec<Recorded>, AuditError> {
    let mut rows = ledger.rows_of_kind(ledger::Kind::Certificate, 1, i64::MAX);
    let mut recorded = Vec::new();
    while let Some(row) = rows.next().await {
        if let Ok(r) = serde_json::from_str::<Recorded>(&row?.body) {
            recorded.push(r);
        }
    }
    Ok(recorded)
}

/// The ledger's certificates against the destination's, both ways.
async fn compare(
    destination: &Destination,
    recorded: &[Recorded],
    in_destination: &[(String, Vec<u8>)],
) -> Result<Vec<String>, AuditError> {
    let mut problems = Vec::new();
    // Every certificate the ledger records must be in the destination, unchanged.
    let hashes: HashMap<&str, String> = in_destination
        .iter()
        .map(|(name, bytes)| (name.as_str(), certificate::sha256_hex(bytes)))
        .collect();
    for r in recorded {
        let (sequence, file, sha256) = (r.sequence, &r.certificate_file, &r.certificate_sha256);
        match hashes.get(file.as_str()) {
            None => problems.push(format!(
                "certificate #{sequence} is recorded in the ledger but {} is missing (the next run rebuilds it from the ledger)",
                destination.location(file)
            )),
            Some(found) if found != sha256 => problems.push(format!(
                "certificate #{sequence} at {} has SHA-256 {found}, the ledger records {sha256}",
                destination.location(file)
            )),
            Some(_) => {}
        }
        if !destination
            .contains(&r.manifest_file)
            .await
            .map_err(AuditError::Certificates)?
        {
            problems.push(format!(
                "certificate #{sequence}'s manifest {} is missing",
                destination.location(&r.manifest_file)
            ));
        }
    }
    // ... and every certificate in the destination must be one the ledger
    // records: a removed last row (the newest certificate's) shows here.
    for (name, _) in in_destination {
        if !recorded.iter().any(|r| &r.certificate_file == name) {
            problems.push(format!(
                "{} is in the destination but the ledger does not record it (ledger rows were removed, or it is another ledger's)",
                destination.location(name)
            ));
        }
    }
    Ok(problems)
}

/// The anchor of a certificate file, read without checking its signature
/// (`verify` does that).
fn file_anchor(bytes: &[u8]) -> Option<(u64, Anchor)> {
    use base64::Engine;
    let env = serde_json::from_slice::<certificate::Envelope>(bytes).ok()?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&env.payload)
        .ok()?;
    let p = serde_json::from_slice::<certificate::Payload>(&payload).ok()?;
    Some((
        p.sequence,
        Anchor {
            last_seq: p.ledger.last_seq,
            last_row_sha256: p.ledger.last_row_sha256,
        },
    ))
}

/// Every manifest entry of `cert` must be absent from its store now.
pub async fn check_absence(cert: &Path, settings: &Settings) -> Check {
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
