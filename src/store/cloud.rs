//! S3, Azure Blob and Google Cloud Storage through `object_store`.
//!
//! Each builder starts from the environment (`from_env`), so credentials come
//! the way each cloud's users expect: AWS_*, AZURE_*, GOOGLE_* variables and
//! the ambient identities object_store supports (IRSA / web identity, managed
//! identity, workload identity). `[stores.options]` (already validated by
//! `config`, which refuses credentials there) and `[stores.retry]` are applied
//! on top. The URL's path becomes a prefix: keys are relative to it, exactly
//! as they are relative to a local store's root.

use std::sync::Arc;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};

use crate::config::{RetrySettings, StoreConfig};

/// A built cloud client, kept typed for the probes that need its credentials.
#[derive(Debug, Clone)]
pub enum Cloud {
    S3 {
        store: Arc<AmazonS3>,
        endpoint: Option<String>,
        region: String,
        bucket: String,
        virtual_hosted: bool,
        skip_signature: bool,
    },
    Azure {
        store: Arc<MicrosoftAzure>,
        account: String,
        container: String,
        /// The blob service endpoint, e.g. `https://ACCOUNT.blob.core.windows.net`.
        endpoint: String,
    },
    Gcs {
        store: Arc<GoogleCloudStorage>,
        base_url: Option<String>,
        bucket: String,
    },
}

/// The client options among `[stores.options]`, for requests lethe makes itself.
pub(crate) fn client_options(options: &[(String, String)]) -> ClientOptions {
    options.iter().fold(ClientOptions::new(), |o, (k, v)| {
        let bare = k
            .trim_start_matches("aws_")
            .trim_start_matches("azure_")
            .trim_start_matches("google_");
        match bare
            .parse::<ClientConfigKey>()
            .or_else(|_| k.parse::<ClientConfigKey>())
        {
            Ok(key) => o.with_config(key, v),
            Err(_) => o,
        }
    })
}

pub(crate) fn retry_config(r: &RetrySettings) -> RetryConfig {
    let mut c = RetryConfig::default();
    if let Some(n) = r.max_retries {
        c.max_retries = n;
    }
    if let Some(t) = r.retry_timeout {
        c.retry_timeout = t;
    }
    if let Some(t) = r.init_backoff {
        c.backoff.init_backoff = t;
    }
    if let Some(t) = r.max_backoff {
        c.backoff.max_backoff = t;
    }
    if let Some(b) = r.backoff_base {
        c.backoff.base = b;
    }
    c
}

/// A cloud store's client, behind its URL's prefix; the typed handle; and
/// the prefix.
pub(crate) type Opened = (Arc<dyn ObjectStore>, Cloud, ObjectPath);

/// Builds the client for a cloud store URL; returns it (behind a prefix if
/// the URL has a path) with its typed handle.
pub(crate) fn open(config: &StoreConfig) -> Result<Opened, String> {
    let url = url::Url::parse(&config.url).map_err(|e| e.to_string())?;
    let prefix = ObjectPath::parse(crate::config::url_prefix(&url)?)
        .map_err(|e| format!("invalid prefix in the URL: {e}"))?;
    let retry = retry_config(&config.retry);
    let bucket = url.host_str().unwrap_or_default().to_string();
    let (store, cloud): (Arc<dyn ObjectStore>, Cloud) = match url.scheme() {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env()
                .with_url(config.url.clone())
                .with_retry(retry);
            for (k, v) in &config.options {
                b = b.with_config(
                    k.parse::<AmazonS3ConfigKey>().map_err(|e| e.to_string())?,
                    v,
                );
            }
            let endpoint = b.get_config_value(&AmazonS3ConfigKey::Endpoint);
            let region = b
                .get_config_value(&AmazonS3ConfigKey::Region)
                .unwrap_or_else(|| "us-east-1".into());
            let truthy = |v: Option<String>| {
                v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
            };
            let virtual_hosted =
                truthy(b.get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest));
            let skip_signature = truthy(b.get_config_value(&AmazonS3ConfigKey::SkipSignature));
            let s3 = Arc::new(b.build().map_err(|e| e.to_string())?);
            (
                s3.clone(),
                Cloud::S3 {
                    store: s3,
                    endpoint,
                    region,
                    bucket: bucket.clone(),
                    virtual_hosted,
                    skip_signature,
                },
            )
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_url(config.url.clone())
                .with_retry(retry);
            for (k, v) in &config.options {
                b = b.with_config(k.parse::<AzureConfigKey>().map_err(|e| e.to_string())?, v);
            }
            let truthy = |v: Option<String>| {
                v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
            };
            let emulator = truthy(b.get_config_value(&AzureConfigKey::UseEmulator));
            let account = match emulator {
                true => "devstoreaccount1".to_string(),
                false => b
                    .get_config_value(&AzureConfigKey::AccountName)
                    .unwrap_or_default(),
            };
            let endpoint = match (b.get_config_value(&AzureConfigKey::Endpoint), emulator) {
                (Some(e), _) => e,
                (None, true) => format!(
                    "{}/{account}",
                    std::env::var("AZURITE_BLOB_STORAGE_URL")
                        .unwrap_or_else(|_| "http://127.0.0.1:10000".into())
                        .trim_end_matches('/')
                ),
                (None, false) => format!("https://{account}.blob.core.windows.net"),
            };
            let container = b
                .get_config_value(&AzureConfigKey::ContainerName)
                .unwrap_or_else(|| bucket.clone());
            let az = Arc::new(b.build().map_err(|e| e.to_string())?);
            (
                az.clone(),
                Cloud::Azure {
                    store: az,
                    account,
                    container,
                    endpoint,
                },
            )
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_url(config.url.clone())
                .with_retry(retry);
            for (k, v) in &config.options {
                b = b.with_config(k.parse::<GoogleConfigKey>().map_err(|e| e.to_string())?, v);
            }
            let base_url = b.get_config_value(&GoogleConfigKey::BaseUrl);
            let gcs = Arc::new(b.build().map_err(|e| e.to_string())?);
            (
                gcs.clone(),
                Cloud::Gcs {
                    store: gcs,
                    base_url,
                    bucket,
                },
            )
        }
        other => return Err(format!("unsupported scheme {other}://")),
    };
    if prefix.as_ref().is_empty() {
        Ok((store, cloud, prefix))
    } else {
        Ok((
            Arc::new(PrefixStore::new(store, prefix.clone())),
            cloud,
            prefix,
        ))
    }
}
