//! Where certificates go: a folder, or an object store. Files there are
//! created, never replaced: one already there with the same bytes is a
//! rebuild and accepted, one with other bytes is an error naming both.

use std::path::{Path, PathBuf};

use futures::StreamExt;

use super::certify::CertifyError;
use crate::certificate::{self, ManifestDigest};
use crate::config::{Certificates, Settings};
use crate::store::{Listed, Store, Written};

/// Where certificates go: a folder, or an object store.
pub enum Destination {
    Folder(PathBuf),
    Store { url: String, store: Box<Store> },
}

type Result<T, E = CertifyError> = std::result::Result<T, E>;

/// The sequence number a certificate file's name carries.
fn certificate_number(name: &str) -> Option<u64> {
    name.strip_prefix("lethe-cert-")
        .and_then(|n| n.strip_suffix(".json"))
        .and_then(|n| n.parse::<u64>().ok())
}

impl Destination {
    pub fn open(settings: &Settings) -> Result<Self> {
        Ok(match &settings.certificates {
            Certificates::Folder(dir) => Destination::Folder(dir.clone()),
            Certificates::Store(config) => Destination::Store {
                url: config.url.clone(),
                store: Box::new(Store::open(config).map_err(CertifyError::OpenStore)?),
            },
        })
    }

    /// Where manifests are written before they are published.
    pub(super) fn staging(&self) -> PathBuf {
        match self {
            Destination::Folder(dir) => dir.clone(),
            Destination::Store { .. } => std::env::temp_dir(),
        }
    }

    /// The destination itself, for people: a path or a URL.
    pub fn describe(&self) -> String {
        match self {
            Destination::Folder(dir) => dir.display().to_string(),
            Destination::Store { url, .. } => crate::config::redact_url(url),
        }
    }

    /// A file's location, for people: a path or a URL.
    pub fn location(&self, name: &str) -> String {
        match self {
            Destination::Folder(dir) => dir.join(name).display().to_string(),
            Destination::Store { url, .. } => format!("{}/{name}", crate::config::redact_url(url)),
        }
    }

    pub async fn contains(&self, name: &str) -> Result<bool> {
        Ok(match self {
            Destination::Folder(dir) => dir.join(name).exists(),
            Destination::Store { store, .. } => store.head(name).await?.is_some(),
        })
    }

    /// Publishes a manifest then its certificate (never a certificate
    /// without its manifest). Both are created, never replaced: a file
    /// already there with the same bytes is accepted (a rebuild), one with
    /// other bytes is an error naming both.
    pub(super) async fn publish(
        &self,
        sequence: u64,
        certificate: &[u8],
        manifest: ManifestDigest,
    ) -> Result<String> {
        let name = certificate::certificate_file_name(sequence);
        match self {
            Destination::Folder(dir) => {
                certificate::publish(dir, sequence, certificate, manifest)?;
            }
            Destination::Store { store, .. } => {
                self.publish_manifest(sequence, manifest).await?;
                if store.put_new(&name, certificate.to_vec()).await? == Written::Exists {
                    self.accept_existing(sequence, &name, &certificate::sha256_hex(certificate))
                        .await?;
                }
            }
        }
        Ok(self.location(&name))
    }

    pub(super) async fn publish_manifest(
        &self,
        sequence: u64,
        manifest: ManifestDigest,
    ) -> Result<()> {
        let name = certificate::manifest_file_name(sequence);
        match self {
            Destination::Folder(dir) => {
                certificate::persist_manifest(manifest, sequence, &dir.join(name))?
            }
            Destination::Store { store, .. } => {
                if store.put_file_new(&name, manifest.path()).await? == Written::Exists {
                    self.accept_existing(sequence, &name, &manifest.sha256)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// A create-new write found `name` taken: fine if it holds the bytes
    /// lethe meant to write, an error otherwise.
    async fn accept_existing(&self, sequence: u64, name: &str, expected: &str) -> Result<()> {
        match self.sha256(name).await? {
            Some(found) if found == expected => Ok(()),
            found => Err(CertifyError::Replaced {
                location: self.location(name),
                sequence,
                found: found.unwrap_or_else(|| "(unreadable)".into()),
                expected: expected.to_string(),
            }),
        }
    }

    /// The SHA-256 of a file in the destination, `None` if it is not there.
    pub(super) async fn sha256(&self, name: &str) -> Result<Option<String>> {
        match self {
            Destination::Folder(dir) => {
                let path = dir.join(name);
                match path.exists() {
                    true => Ok(Some(certificate::file_sha256(&path)?)),
                    false => Ok(None),
                }
            }
            Destination::Store { store, .. } => {
                let staging = tempfile::tempdir()?;
                let file = staging.path().join("object");
                match store.get_to_file(name, &file).await? {
                    true => Ok(Some(certificate::file_sha256(&file)?)),
                    false => Ok(None),
                }
            }
        }
    }

    /// The names of the files at the top of the destination, streamed to
    /// `each` (a folder that does not exist holds none).
    async fn each_name(&self, mut each: impl FnMut(&str)) -> Result<()> {
        match self {
            Destination::Folder(dir) => {
                let entries = match std::fs::read_dir(dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(source) => {
                        return Err(CertifyError::ReadFolder {
                            path: dir.clone(),
                            source,
                        });
                    }
                };
                for entry in entries {
                    if let Some(name) = entry?.file_name().to_str() {
                        each(name);
                    }
                }
            }
            Destination::Store { store, .. } => {
                let mut listing = store.list();
                while let Some(entry) = listing.next().await {
                    if let Listed::Object(meta) = entry? {
                        let key = meta.location.as_ref();
                        if !key.contains('/') {
                            each(key);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The names of the files at the top of the destination.
    pub(super) async fn names(&self) -> Result<std::collections::HashSet<String>> {
        let mut names = std::collections::HashSet::new();
        self.each_name(|name| {
            names.insert(name.to_string());
        })
        .await?;
        Ok(names)
    }

    /// The highest-numbered certificate file in the destination, by its
    /// name alone (the listing is streamed; only the maximum is kept).
    pub(super) async fn highest_certificate(&self) -> Result<Option<u64>> {
        let mut highest = None;
        self.each_name(|name| highest = highest.max(certificate_number(name)))
            .await?;
        Ok(highest)
    }

    /// Copies a certificate and whatever lies beside it (manifest, previous
    /// certificate) into `dir`, for verification. Returns the local path of
    /// the certificate.
    pub async fn fetch(&self, name: &str, dir: &Path) -> Result<PathBuf> {
        let Destination::Store { store, .. } = self else {
            return Err(CertifyError::NotAStore);
        };
        let local = dir.join(name);
        if !store.get_to_file(name, &local).await? {
            return Err(CertifyError::Missing(self.location(name)));
        }
        let manifest = certificate::manifest_path_for(&local);
        let manifest_name = manifest
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        store.get_to_file(&manifest_name, &manifest).await?;
        if let Some(sequence) = certificate_number(name)
            && sequence > 1
        {
            let previous = certificate::certificate_file_name(sequence - 1);
            store.get_to_file(&previous, &dir.join(&previous)).await?;
        }
        Ok(local)
    }

    /// The bytes of every certificate file, for the ledger's anchor check.
    pub async fn certificates(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut names = Vec::new();
        self.each_name(|name| {
            if name.starts_with("lethe-cert-") && name.ends_with(".json") {
                names.push(name.to_string());
            }
        })
        .await?;
        let mut out = Vec::new();
        for name in names {
            match self {
                Destination::Folder(dir) => {
                    let bytes = std::fs::read(dir.join(&name))?;
                    out.push((name, bytes));
                }
                Destination::Store { store, .. } => {
                    let dir = tempfile::tempdir()?;
                    let file = dir.path().join("c.json");
                    if store.get_to_file(&name, &file).await? {
                        out.push((name, std::fs::read(&file)?));
                    }
                }
            }
        }
        Ok(out)
    }
}
