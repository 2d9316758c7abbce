//! What a delete really does in a store.
//!
//! A certificate must never claim more than happened. In a versioned S3 or
//! GCS bucket a delete leaves earlier versions behind; with GCS soft delete
//! (on by default for new buckets) or Azure soft delete the object can be
//! restored for a while. lethe asks the store where the credentials allow it,
//! compares the answer with what the operator asserts in `lethe.toml`
//! (`deletion_mode`), refuses to run on a contradiction, and otherwise says
//! in the plan, the log and the certificate what it knows and how it knows it.

use std::time::Duration;

use object_store::ClientOptions;
use object_store::aws::AwsAuthorizer;
use object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};

use super::{Cloud, Store};
use crate::config::DeletionMode;

/// A bounded wait for a probe request: a probe must never hang a run.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// How deletions end in a store, and how lethe knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionStatement {
    /// `permanent`, `delete-marker`, `soft-deleted` or `unknown`.
    pub mode: String,
    /// "detected: ...", "asserted by the operator ...", or why it is unknown.
    pub basis: String,
}

impl DeletionStatement {
    fn known(mode: DeletionMode, basis: String) -> Self {
        Self {
            mode: mode.as_str().to_string(),
            basis,
        }
    }

    /// The caveat a certificate and a plan carry, if deleted objects may
    /// still be recoverable.
    pub fn caveat(&self) -> Option<&'static str> {
        match self.mode.as_str() {
            "permanent" => None,
            "delete-marker" => {
                Some("current version deleted; earlier versions remain in the store")
            }
            "soft-deleted" => Some(
                "deleted objects remain recoverable during the store's soft-delete retention period",
            ),
            _ => Some(
                "lethe could not establish whether earlier versions or soft-deleted copies remain",
            ),
        }
    }
}

impl Store {
    /// Establishes the deletion mode and checks it against `asserted`.
    /// `Err` is a contradiction between the store and the operator's assertion.
    pub async fn deletion_statement(
        &self,
        asserted: Option<DeletionMode>,
    ) -> Result<DeletionStatement, String> {
        let detected = match (&self.local, &self.cloud) {
            (Some(_), _) => Ok((
                DeletionMode::Permanent,
                "a local file system keeps no versions".to_string(),
            )),
            (None, Some(cloud)) => detect(cloud, &self.client_options).await,
            (None, None) => Err("this store cannot be asked".to_string()),
        };
        match (detected, asserted) {
            (Ok((found, why)), Some(claimed)) if found != claimed => Err(format!(
                "store {}: lethe.toml asserts deletion_mode = \"{}\", but the store says \"{}\" ({why}); refusing to run",
                self.name,
                claimed.as_str(),
                found.as_str()
            )),
            (Ok((found, why)), _) => {
                Ok(DeletionStatement::known(found, format!("detected: {why}")))
            }
            (Err(why), Some(claimed)) => Ok(DeletionStatement::known(
                claimed,
                format!("asserted by the operator in lethe.toml; not checked: {why}"),
            )),
            (Err(why), None) => Ok(DeletionStatement {
                mode: "unknown".into(),
                basis: format!("not checked: {why}; set deletion_mode in lethe.toml to assert it"),
            }),
        }
    }
}

async fn detect(cloud: &Cloud, options: &ClientOptions) -> Result<(DeletionMode, String), String> {
    match cloud {
        Cloud::S3 {
            store,
            endpoint,
            region,
            bucket,
            virtual_hosted,
            skip_signature,
        } => {
            let base = endpoint
                .clone()
                .map(|e| e.trim_end_matches('/').to_string());
            let url = match (base, virtual_hosted) {
                (Some(e), true) => format!("{e}/?versioning"),
                (Some(e), false) => format!("{e}/{bucket}?versioning"),
                (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com/?versioning"),
                (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}?versioning"),
            };
            let mut request = http::Request::get(&url)
                .body(HttpRequestBody::empty())
                .map_err(|e| e.to_string())?;
            if !skip_signature {
                let credential = store
                    .credentials()
                    .get_credential()
                    .await
                    .map_err(|e| format!("no credentials: {e}"))?;
                AwsAuthorizer::new(&credential, "s3", region)
                    .try_authorize(&mut request, None)
                    .map_err(|e| e.to_string())?;
            }
            let (status, body) = send(request, options).await?;
            match status {
                200 if body.contains("<Status>Enabled</Status>") => Ok((
                    DeletionMode::DeleteMarker,
                    "bucket versioning is enabled".into(),
                )),
                200 if body.contains("<Status>Suspended</Status>") => Ok((
                    DeletionMode::DeleteMarker,
                    "bucket versioning is suspended; versions made before remain".into(),
                )),
                200 => Ok((
                    DeletionMode::Permanent,
                    "bucket versioning has never been enabled".into(),
                )),
                403 => Err(
                    "the credentials may not read the bucket's versioning (s3:GetBucketVersioning)"
                        .into(),
                ),
                other => Err(format!(
                    "reading the bucket's versioning answered HTTP {other}"
                )),
            }
        }
        Cloud::Gcs {
            store,
            base_url,
            bucket,
        } => {
            let base = base_url
                .clone()
                .unwrap_or_else(|| "https://storage.googleapis.com".into());
            let url = format!(
                "{}/storage/v1/b/{bucket}?fields=versioning,softDeletePolicy",
                base.trim_end_matches('/')
            );
            let credential = store
                .credentials()
                .get_credential()
                .await
                .map_err(|e| format!("no credentials: {e}"))?;
            let mut builder = http::Request::get(&url);
            if !credential.bearer.is_empty() {
                builder = builder.header("Authorization", format!("Bearer {}", credential.bearer));
            }
            let request = builder
                .body(HttpRequestBody::empty())
                .map_err(|e| e.to_string())?;
            let (status, body) = send(request, options).await?;
            match status {
                200 => {
                    let meta: serde_json::Value = serde_json::from_str(&body)
                        .map_err(|e| format!("unreadable bucket metadata: {e}"))?;
                    let soft_delete = meta["softDeletePolicy"]["retentionDurationSeconds"]
                        .as_str()
                        .and_then(|s| s.parse::<u64>().ok())
                        .or_else(|| meta["softDeletePolicy"]["retentionDurationSeconds"].as_u64())
                        .unwrap_or(0);
                    if soft_delete > 0 {
                        Ok((
                            DeletionMode::SoftDeleted,
                            format!(
                                "the bucket's soft-delete policy keeps deleted objects for {soft_delete} s"
                            ),
                        ))
                    } else if meta["versioning"]["enabled"].as_bool() == Some(true) {
                        Ok((
                            DeletionMode::DeleteMarker,
                            "object versioning is enabled".into(),
                        ))
                    } else {
                        Ok((
                            DeletionMode::Permanent,
                            "no object versioning and no soft-delete policy".into(),
                        ))
                    }
                }
                403 => Err(
                    "the credentials may not read the bucket's metadata (storage.buckets.get)"
                        .into(),
                ),
                other => Err(format!(
                    "reading the bucket's metadata answered HTTP {other}"
                )),
            }
        }
        Cloud::Azure { .. } => Err(
            "lethe cannot yet read an Azure account's versioning and soft-delete settings".into(),
        ),
    }
}

async fn send(
    request: object_store::client::HttpRequest,
    options: &ClientOptions,
) -> Result<(u16, String), String> {
    let client = ReqwestConnector::default()
        .connect(options)
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(PROBE_TIMEOUT, client.execute(request))
        .await
        .map_err(|_| "the request timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(PROBE_TIMEOUT, response.into_body().bytes())
        .await
        .map_err(|_| "the response timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
