//! Requests lethe sends itself, signed with a cloud client's credentials:
//! the probes of what a delete does (`probe`) and the listing of exact keys
//! (`pages`). object_store's credential providers stay in charge of the
//! credentials (environment, web identity, managed identity, refreshes);
//! lethe only builds the request and signs it with them.

use std::time::Duration;

use object_store::ClientOptions;
use object_store::aws::AwsAuthorizer;
use object_store::azure::AzureAuthorizer;
use object_store::client::{HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector};

use super::Cloud;

/// A bounded wait for one request and for its answer: a request lethe
/// sends itself must never hang a run.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How a request failed: before an answer came, or with one.
#[derive(Debug)]
pub(super) enum SendError {
    /// No answer (a refused connection, a timeout, a reset): worth a retry.
    Transport(String),
    /// The request could not be built or signed: a retry cannot help.
    Request(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Transport(e) | SendError::Request(e) => f.write_str(e),
        }
    }
}

impl Cloud {
    /// The bucket's (or container's) URL, addressed the way the store is
    /// configured: path-style or virtual-hosted, AWS or a custom endpoint;
    /// an Azure account's endpoint; Google's endpoint or another.
    pub(super) fn bucket_url(&self) -> String {
        match self {
            Cloud::S3 {
                endpoint,
                region,
                bucket,
                virtual_hosted,
                ..
            } => s3_bucket_url(endpoint.as_deref(), region, bucket, *virtual_hosted),
            Cloud::Azure {
                endpoint,
                container,
                ..
            } => format!("{}/{container}", endpoint.trim_end_matches('/')),
            Cloud::Gcs {
                base_url, bucket, ..
            } => format!("{}/{bucket}", gcs_base(base_url.as_deref())),
        }
    }

    /// A GET of `url`, signed with the store's credentials (unless an S3
    /// store is configured to send unsigned requests). An Azure SAS token
    /// is added to the query.
    pub(super) async fn signed_get(&self, url: &str) -> Result<HttpRequest, SendError> {
        let bad = |e: String| SendError::Request(e);
        let mut request = http::Request::get(url)
            .body(HttpRequestBody::empty())
            .map_err(|e| bad(e.to_string()))?;
        match self {
            Cloud::S3 {
                store,
                region,
                skip_signature,
                ..
            } => {
                if !skip_signature {
                    let credential = store
                        .credentials()
                        .get_credential()
                        .await
                        .map_err(|e| SendError::Transport(format!("no credentials: {e}")))?;
                    AwsAuthorizer::new(&credential, "s3", region)
                        .try_authorize(&mut request, None)
                        .map_err(|e| bad(e.to_string()))?;
                }
            }
            Cloud::Azure { store, account, .. } => {
                let credential = store
                    .credentials()
                    .get_credential()
                    .await
                    .map_err(|e| SendError::Transport(format!("no credentials: {e}")))?;
                AzureAuthorizer::new(&credential, account)
                    .try_authorize(&mut request)
                    .map_err(|e| bad(e.to_string()))?;
            }
            Cloud::Gcs { store, .. } => {
                let credential = store
                    .credentials()
                    .get_credential()
                    .await
                    .map_err(|e| SendError::Transport(format!("no credentials: {e}")))?;
                if !credential.bearer.is_empty() {
                    let value =
                        http::HeaderValue::from_str(&format!("Bearer {}", credential.bearer))
                            .map_err(|e| bad(e.to_string()))?;
                    request
                        .headers_mut()
                        .insert(http::header::AUTHORIZATION, value);
                }
            }
        }
        Ok(request)
    }
}

/// Google's endpoint unless the store names another, without a trailing `/`.
pub(super) fn gcs_base(base_url: Option<&str>) -> &str {
    base_url
        .unwrap_or("https://storage.googleapis.com")
        .trim_end_matches('/')
}

fn s3_bucket_url(
    endpoint: Option<&str>,
    region: &str,
    bucket: &str,
    virtual_hosted: bool,
) -> String {
    let base = endpoint.map(|e| e.trim_end_matches('/'));
    match (base, virtual_hosted) {
        (Some(e), true) => format!("{e}/"),
        (Some(e), false) => format!("{e}/{bucket}"),
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com/"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    }
}

/// Sends `request` and reads its whole answer, each within
/// [`REQUEST_TIMEOUT`].
pub(super) async fn send(
    request: HttpRequest,
    options: &ClientOptions,
) -> Result<(u16, bytes::Bytes), SendError> {
    let client = ReqwestConnector::default()
        .connect(options)
        .map_err(|e| SendError::Request(e.to_string()))?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, client.execute(request))
        .await
        .map_err(|_| SendError::Transport("the request timed out".into()))?
        .map_err(|e| SendError::Transport(e.to_string()))?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().bytes())
        .await
        .map_err(|_| SendError::Transport("the response timed out".into()))?
        .map_err(|e| SendError::Transport(e.to_string()))?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_follow_the_store_addressing() {
        let s3 = |endpoint, virtual_hosted| {
            s3_bucket_url(endpoint, "eu-west-1", "calls", virtual_hosted)
        };
        assert_eq!(s3(None, false), "https://s3.eu-west-1.amazonaws.com/calls");
        assert_eq!(s3(None, true), "https://calls.s3.eu-west-1.amazonaws.com/");
        assert_eq!(
            s3(Some("http://127.0.0.1:9000/"), false),
            "http://127.0.0.1:9000/calls"
        );
        assert_eq!(
            s3(Some("http://calls.example/"), true),
            "http://calls.example/"
        );
        assert_eq!(gcs_base(None), "https://storage.googleapis.com");
        assert_eq!(
            gcs_base(Some("http://127.0.0.1:4443/")),
            "http://127.0.0.1:4443"
        );
    }
}
