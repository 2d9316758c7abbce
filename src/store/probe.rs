//! What a delete really does in a store.
//!
//! A certificate must never claim more than happened. In a versioned S3 or
//! GCS bucket a delete leaves earlier versions behind; with GCS soft delete
//! (on by default for new buckets) or Azure soft delete the object can be
//! restored for a while. lethe asks the store where the credentials allow it,
//! compares the answer with what the operator asserts in `lethe.toml`
//! (`deletion_mode`), refuses to run on a contradiction, and otherwise says
//! in the plan, the log and the certificate what it knows and how it knows it.

use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::azure::AzureCredential;

use super::signed::{gcs_base, send};
use super::{Cloud, Store};
use crate::config::DeletionMode;

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
        let detected = match (self.local, &self.cloud) {
            (true, _) => Ok((
                DeletionMode::Permanent,
                "a local file system keeps no versions".to_string(),
            )),
            (false, Some(cloud)) => detect(cloud, self).await,
            (false, None) => Err("this store cannot be asked".to_string()),
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

/// Asks the store's service how a delete ends there; `Err` says why it
/// could not be asked or did not answer.
async fn detect(cloud: &Cloud, store: &Store) -> Result<(DeletionMode, String), String> {
    let options = &store.client_options;
    let url = match cloud {
        Cloud::S3 { .. } => format!("{}?versioning", cloud.bucket_url()),
        Cloud::Gcs {
            base_url, bucket, ..
        } => gcs_bucket_url(base_url.as_deref(), bucket),
        Cloud::Azure {
            store: az,
            endpoint,
            ..
        } => {
            let credential = az
                .credentials()
                .get_credential()
                .await
                .map_err(|e| format!("no credentials: {e}"))?;
            if let AzureCredential::SASToken(_) = credential.as_ref() {
                return Err("a SAS token cannot read the account's blob service properties".into());
            }
            format!(
                "{}/?restype=service&comp=properties",
                endpoint.trim_end_matches('/')
            )
        }
    };
    let request = cloud.signed_get(&url).await.map_err(|e| e.to_string())?;
    let (status, body) = send(request, options).await.map_err(|e| e.to_string())?;
    let body = String::from_utf8_lossy(&body);
    match cloud {
        Cloud::S3 { .. } => s3_versioning(status, &body),
        Cloud::Gcs { .. } => gcs_bucket_metadata(status, &body),
        Cloud::Azure { .. } => azure_service_properties(store, status, &body).await,
    }
}

/// Reads S3's answer to `GetBucketVersioning`: a bucket whose versioning was
/// ever enabled keeps earlier versions, even when it is suspended now.
fn s3_versioning(status: u16, body: &str) -> Result<(DeletionMode, String), String> {
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
            "the credentials may not read the bucket's versioning (s3:GetBucketVersioning)".into(),
        ),
        other => Err(format!(
            "reading the bucket's versioning answered HTTP {other}"
        )),
    }
}

/// The URL of a bucket's versioning and soft-delete metadata, at Google's
/// endpoint unless the store names another.
fn gcs_bucket_url(base_url: Option<&str>, bucket: &str) -> String {
    format!(
        "{}/storage/v1/b/{bucket}?fields=versioning,softDeletePolicy",
        gcs_base(base_url)
    )
}

/// Reads GCS bucket metadata: soft delete is checked first, because a
/// soft-deleted object is recoverable whether or not versioning is on.
fn gcs_bucket_metadata(status: u16, body: &str) -> Result<(DeletionMode, String), String> {
    match status {
        200 => {
            let meta: serde_json::Value = serde_json::from_str(body)
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
        403 => {
            Err("the credentials may not read the bucket's metadata (storage.buckets.get)".into())
        }
        other => Err(format!(
            "reading the bucket's metadata answered HTTP {other}"
        )),
    }
}

/// Reads Azure's blob service properties, and without soft delete looks at
/// the first blob for a version id.
async fn azure_service_properties(
    store: &Store,
    status: u16,
    body: &str,
) -> Result<(DeletionMode, String), String> {
    match status {
        200 if azure_soft_delete(body) => Ok((
            DeletionMode::SoftDeleted,
            "blob soft delete is enabled on the account (DeleteRetentionPolicy)".into(),
        )),
        // Blob versioning is an account setting the data plane does not
        // show; a versioned account gives every blob a version id.
        200 => match store.first_object_version().await? {
            Some(true) => Ok((
                DeletionMode::DeleteMarker,
                "blob versioning is enabled (blobs carry version ids)".into(),
            )),
            Some(false) => Ok((
                DeletionMode::Permanent,
                "no blob soft delete, and blobs carry no version ids".into(),
            )),
            None => Ok((
                DeletionMode::Permanent,
                "no blob soft delete; the store is empty, so nothing will be deleted".into(),
            )),
        },
        403 => Err("the credentials may not read the account's blob service properties".into()),
        other => Err(format!(
            "reading the account's blob service properties answered HTTP {other}"
        )),
    }
}

/// Whether Azure's blob service properties enable blob soft delete.
fn azure_soft_delete(properties: &str) -> bool {
    properties
        .split("<DeleteRetentionPolicy>")
        .nth(1)
        .and_then(|rest| rest.split("</DeleteRetentionPolicy>").next())
        .is_some_and(|policy| policy.contains("<Enabled>true</Enabled>"))
}

impl Store {
    /// Whether the first listed object carries a version id; `None` if the store is empty.
    async fn first_object_version(&self) -> Result<Option<bool>, String> {
        let first = self.inner.list(None).next().await;
        let Some(first) = first else { return Ok(None) };
        let meta = first.map_err(|e| e.to_string())?;
        let head = self
            .inner
            .head(&meta.location)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(head.version.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_soft_delete_is_read_from_the_retention_policy() {
        let on = "<StorageServiceProperties><Logging><RetentionPolicy><Enabled>true</Enabled></RetentionPolicy></Logging><DeleteRetentionPolicy><Enabled>true</Enabled><Days>7</Days></DeleteRetentionPolicy></StorageServiceProperties>";
        let off = "<StorageServiceProperties><Logging><RetentionPolicy><Enabled>true</Enabled></RetentionPolicy></Logging><DeleteRetentionPolicy><Enabled>false</Enabled></DeleteRetentionPolicy></StorageServiceProperties>";
        assert!(azure_soft_delete(on));
        assert!(
            !azure_soft_delete(off),
            "another policy's Enabled must not count"
        );
        assert!(!azure_soft_delete("<StorageServiceProperties/>"));
    }

    #[test]
    fn probe_urls_follow_the_store_addressing() {
        assert_eq!(
            gcs_bucket_url(None, "calls"),
            "https://storage.googleapis.com/storage/v1/b/calls?fields=versioning,softDeletePolicy"
        );
        assert_eq!(
            gcs_bucket_url(Some("http://127.0.0.1:4443/"), "calls"),
            "http://127.0.0.1:4443/storage/v1/b/calls?fields=versioning,softDeletePolicy"
        );
    }

    #[test]
    fn versioning_answers_are_read_as_deletion_modes() {
        let mode = |r: Result<(DeletionMode, String), String>| r.map(|(m, _)| m);
        let suspended =
            "<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>";
        assert_eq!(
            mode(s3_versioning(200, suspended)),
            Ok(DeletionMode::DeleteMarker)
        );
        assert_eq!(
            mode(s3_versioning(200, "<VersioningConfiguration/>")),
            Ok(DeletionMode::Permanent)
        );
        assert!(
            s3_versioning(403, "")
                .unwrap_err()
                .contains("s3:GetBucketVersioning")
        );
        let soft = r#"{"softDeletePolicy":{"retentionDurationSeconds":"604800"},"versioning":{"enabled":true}}"#;
        assert_eq!(
            mode(gcs_bucket_metadata(200, soft)),
            Ok(DeletionMode::SoftDeleted)
        );
        let versioned = r#"{"versioning":{"enabled":true}}"#;
        assert_eq!(
            mode(gcs_bucket_metadata(200, versioned)),
            Ok(DeletionMode::DeleteMarker)
        );
        assert_eq!(
            mode(gcs_bucket_metadata(200, "{}")),
            Ok(DeletionMode::Permanent)
        );
        assert!(
            gcs_bucket_metadata(500, "")
                .unwrap_err()
                .ends_with("HTTP 500")
        );
    }

    #[tokio::test]
    async fn detection_assertion_and_contradiction() {
        // A store lethe cannot ask: unknown, unless the operator asserts.
        let opaque = Store::from_object_store(
            "s",
            "mem://",
            std::sync::Arc::new(object_store::memory::InMemory::new()),
        );
        let unknown = opaque.deletion_statement(None).await.unwrap();
        assert_eq!(unknown.mode, "unknown");
        assert!(unknown.caveat().is_some());
        let asserted = opaque
            .deletion_statement(Some(DeletionMode::SoftDeleted))
            .await
            .unwrap();
        assert_eq!(asserted.mode, "soft-deleted");
        assert!(asserted.basis.starts_with("asserted by the operator"));
        // A local folder is detected as permanent; asserting otherwise is refused.
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::StoreConfig {
            name: "local".into(),
            url: url::Url::from_file_path(dir.path()).unwrap().to_string(),
            options: vec![],
            retry: Default::default(),
            deletion_mode: None,
            faults: None,
            listing_order: None,
            verify: None,
            max_in_flight: crate::config::DEFAULT_IN_FLIGHT,
            certificates_prefix: None,
        };
        let local = Store::open(&config).unwrap();
        let detected = local
            .deletion_statement(Some(DeletionMode::Permanent))
            .await
            .unwrap();
        assert_eq!(
            (detected.mode.as_str(), detected.caveat()),
            ("permanent", None)
        );
        let err = local
            .deletion_statement(Some(DeletionMode::DeleteMarker))
            .await
            .unwrap_err();
        assert!(
            err.contains(
                "asserts deletion_mode = \"delete-marker\", but the store says \"permanent\""
            ),
            "{err}"
        );
    }
}
