//! Listing a cloud store's exact keys, page by page.
//!
//! S3, Azure and GCS accept keys that object_store's `Path` refuses or
//! changes: an empty segment (`calls//x.wav`, one uploader's double slash),
//! a `.` or `..` segment, a control character, a leading or trailing `/`.
//! object_store parses a whole listing page at once, so one refused key
//! fails its page and ends the listing; and `Path` drops a trailing `/`, so
//! `calls/x.wav/` would pass for `calls/x.wav`: a delete of "it" deletes
//! another object or nothing, and a certificate would claim it.
//!
//! So lethe sends the list requests itself, signed with the client's own
//! credentials ([`super::signed`]), and reads every key exactly as the store
//! wrote it. A key `Path` represents exactly is handed over as an object;
//! any other is reported once (kept, never deleted) with its reason, and
//! the listing goes on with the store's continuation token. One request a
//! page, as object_store's (S3: ListObjectsV2, 1,000 keys a page, keys XML
//! cannot carry URL-encoded; Azure: List Blobs, 5,000, such names
//! `Encoded`; GCS: the JSON API's objects list, 1,000, whose JSON carries
//! any name exactly, where its XML API replaces what XML cannot carry),
//! retried as the store's `[stores.retry]` says, each bounded by a timeout.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectMeta, RetryConfig};
use serde::Deserialize;

use super::signed::{SendError, gcs_base, send};
use super::{Cloud, Entries, EntryStream, Listed, ProblemKind};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A cloud store's listing through its list API, key by exact key.
#[derive(Clone)]
pub(crate) struct Paged {
    cloud: Cloud,
    options: ClientOptions,
    retry: RetryConfig,
    /// The URL's path with a trailing `/`, or `None` for the whole bucket.
    prefix: Option<String>,
}

impl std::fmt::Debug for Paged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paged")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Paged {
    pub(crate) fn new(
        cloud: Cloud,
        prefix: &Path,
        options: ClientOptions,
        retry: RetryConfig,
    ) -> Self {
        let prefix = (!prefix.as_ref().is_empty()).then(|| format!("{}/", prefix.as_ref()));
        Self {
            cloud,
            options,
            retry,
            prefix,
        }
    }
}

/// One listed key, exactly as the store wrote it.
#[derive(Debug, Clone, PartialEq)]
struct RawObject {
    key: String,
    last_modified: DateTime<Utc>,
    size: u64,
    e_tag: Option<String>,
}

/// One page: its keys, and the token of the next page if there is one.
#[derive(Debug, PartialEq)]
struct Page {
    objects: Vec<RawKey>,
    next: Option<String>,
}

/// A key as decoded from a page: text, or bytes that are not UTF-8.
#[derive(Debug, PartialEq)]
enum RawKey {
    Text(RawObject),
    NotUtf8(String),
}

/// ListObjectsV2, as S3 answers it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3Page {
    #[serde(default)]
    contents: Vec<S3Object>,
    next_continuation_token: Option<String>,
    is_truncated: Option<bool>,
    encoding_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3Object {
    key: String,
    last_modified: DateTime<Utc>,
    size: u64,
    #[serde(rename = "ETag")]
    e_tag: Option<String>,
}

/// The GCS JSON API's objects list.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GcsPage {
    kind: Option<String>,
    #[serde(default)]
    items: Vec<GcsObject>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct GcsObject {
    name: String,
    /// A decimal string, as the JSON API writes 64-bit numbers.
    size: String,
    updated: DateTime<Utc>,
    etag: Option<String>,
}

/// Azure's List Blobs.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AzurePage {
    #[serde(default)]
    blobs: AzureBlobs,
    next_marker: Option<String>,
}

#[derive(Default, Deserialize)]
struct AzureBlobs {
    #[serde(rename = "Blob", default)]
    blobs: Vec<AzureBlob>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AzureBlob {
    name: AzureName,
    properties: AzureProperties,
}

/// A blob name; `Encoded="true"` when Azure percent-encoded it (a name
/// with characters XML cannot carry).
#[derive(Deserialize)]
struct AzureName {
    #[serde(rename = "@Encoded", default)]
    encoded: Option<bool>,
    #[serde(rename = "$text", default)]
    text: String,
}

#[derive(Deserialize)]
struct AzureProperties {
    #[serde(rename = "Last-Modified")]
    last_modified: String,
    #[serde(rename = "Content-Length")]
    content_length: u64,
    #[serde(rename = "Etag")]
    e_tag: Option<String>,
    /// `directory` for a folder of an account with a hierarchical namespace.
    #[serde(rename = "ResourceType")]
    resource_type: Option<String>,
}

/// Decodes a URL-encoded key (`+` is a space, as S3 writes it).
fn url_decoded(key: &str, plus_is_space: bool) -> Result<String, String> {
    let key = match plus_is_space {
        true => key.replace('+', " "),
        false => key.to_string(),
    };
    percent_encoding::percent_decode_str(&key)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| key.clone())
}

fn unreadable_page(e: impl std::fmt::Display) -> String {
    format!("the store's listing page could not be read: {e}")
}

/// Whether the document's first element is `name`: a 200 answer that is
/// not a listing (a proxy's page) must not pass for an empty one.
fn root_is(body: &[u8], name: &str) -> bool {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)) => {
                return e.local_name().as_ref() == name.as_bytes();
            }
            Ok(quick_xml::events::Event::Eof) | Err(_) => return false,
            Ok(_) => buf.clear(),
        }
    }
}

fn s3_page(body: &[u8]) -> Result<Page, String> {
    if !root_is(body, "ListBucketResult") {
        return Err(unreadable_page("it is not a ListBucketResult"));
    }
    let page: S3Page = quick_xml::de::from_reader(body).map_err(unreadable_page)?;
    let encoded = page.encoding_type.as_deref() == Some("url");
    let objects = page
        .contents
        .into_iter()
        .map(|o| {
            let key = match encoded {
                true => url_decoded(&o.key, true),
                false => Ok(o.key),
            };
            match key {
                Ok(key) => RawKey::Text(RawObject {
                    key,
                    last_modified: o.last_modified,
                    size: o.size,
                    e_tag: o.e_tag,
                }),
                Err(raw) => RawKey::NotUtf8(raw),
            }
        })
        .collect();
    let next = page.next_continuation_token.filter(|t| !t.is_empty());
    if page.is_truncated == Some(true) && next.is_none() {
        return Err(unreadable_page(
            "it says more keys follow, but gives no continuation token",
        ));
    }
    Ok(Page { objects, next })
}

fn azure_page(body: &[u8]) -> Result<Page, String> {
    if !root_is(body, "EnumerationResults") {
        return Err(unreadable_page("it is not an EnumerationResults"));
    }
    let page: AzurePage = quick_xml::de::from_reader(body).map_err(unreadable_page)?;
    let mut objects = Vec::with_capacity(page.blobs.blobs.len());
    for blob in page.blobs.blobs {
        if blob.properties.resource_type.as_deref() == Some("directory") {
            continue;
        }
        let key = match blob.name.encoded {
            Some(true) => url_decoded(&blob.name.text, false),
            _ => Ok(blob.name.text),
        };
        let last_modified = DateTime::parse_from_rfc2822(&blob.properties.last_modified)
            .map_err(|e| unreadable_page(format!("Last-Modified: {e}")))?
            .with_timezone(&Utc);
        objects.push(match key {
            Ok(key) => RawKey::Text(RawObject {
                key,
                last_modified,
                size: blob.properties.content_length,
                e_tag: blob.properties.e_tag,
            }),
            Err(raw) => RawKey::NotUtf8(raw),
        });
    }
    let next = page.next_marker.filter(|t| !t.is_empty());
    Ok(Page { objects, next })
}

fn gcs_page(body: &[u8]) -> Result<Page, String> {
    let page: GcsPage = serde_json::from_slice(body).map_err(unreadable_page)?;
    if page.kind.as_deref() != Some("storage#objects") {
        return Err(unreadable_page("it is not a storage#objects list"));
    }
    let mut objects = Vec::with_capacity(page.items.len());
    for o in page.items {
        let size = o
            .size
            .parse()
            .map_err(|_| unreadable_page(format!("size {:?}", o.size)))?;
        objects.push(RawKey::Text(RawObject {
            key: o.name,
            last_modified: o.updated,
            size,
            e_tag: o.etag,
        }));
    }
    let next = page.next_page_token.filter(|t| !t.is_empty());
    Ok(Page { objects, next })
}

/// Why `key` cannot be addressed exactly through object_store, if it cannot.
fn unaddressable(key: &str, size: u64) -> Option<String> {
    // A store that cannot send a character in its answer may put U+FFFD in
    // its place: the name listed is then not the object's.
    if Path::parse(key).is_ok_and(|p| p.as_ref() == key) && !key.contains('\u{FFFD}') {
        return None;
    }
    let segments: Vec<&str> = key.split('/').collect();
    let why = if key.ends_with('/') && size == 0 {
        "a folder marker (a key ending in `/`, as consoles create for folders)".to_string()
    } else if key.ends_with('/') {
        "a trailing `/`".to_string()
    } else if key.starts_with('/') {
        "a leading `/`".to_string()
    } else if segments.contains(&"") {
        "an empty segment (`//`)".to_string()
    } else if let Some(dots) = segments.iter().find(|s| **s == "." || **s == "..") {
        format!("a `{dots}` segment")
    } else if let Some(c) = key.chars().find(char::is_ascii_control) {
        format!("a control character (U+{:04X})", c as u32)
    } else if key.contains('\u{FFFD}') {
        "a replacement character (U+FFFD), which a store writes for a character its answer cannot carry".to_string()
    } else {
        "a key object_store does not represent exactly".to_string()
    };
    Some(why)
}

/// The message of a list request the store refused: its status and, from
/// an XML or JSON error body, its code and message.
fn refused(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))?;
        Some(text[start..start + end].trim().to_string())
    };
    let detail = match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!(": {code}: {message}"),
        (Some(code), None) => format!(": {code}"),
        _ => String::new(),
    };
    let detail: String = detail
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    format!("the store answered the list request with HTTP {status}{detail}")
}

impl Paged {
    /// The URL of one list request: keys under `prefix` (the store's own
    /// prefix included), from after `start` on the first page (Azure and
    /// GCS start at it, inclusive), then from the store's `token`.
    fn page_url(
        &self,
        prefix: Option<&str>,
        start: Option<&str>,
        token: Option<&str>,
    ) -> Result<url::Url, String> {
        let base = match &self.cloud {
            Cloud::Gcs {
                base_url, bucket, ..
            } => format!("{}/storage/v1/b/{bucket}/o", gcs_base(base_url.as_deref())),
            _ => self.cloud.bucket_url(),
        };
        // Each API's fixed parameters, and its names for the next page's
        // token and for where the first page starts.
        let (fixed, token_name, start_name): (&[(&str, &str)], &str, &str) = match &self.cloud {
            Cloud::Azure { .. } => (
                &[("restype", "container"), ("comp", "list")],
                "marker",
                "startFrom",
            ),
            Cloud::Gcs { .. } => (&[("maxResults", "1000")], "pageToken", "startOffset"),
            // Keys XML 1.0 cannot carry come back URL-encoded.
            Cloud::S3 { .. } => (
                &[("list-type", "2"), ("encoding-type", "url")],
                "continuation-token",
                "start-after",
            ),
        };
        let mut url = url::Url::parse(&base).map_err(|e| e.to_string())?;
        {
            let mut query = url.query_pairs_mut();
            query.extend_pairs(fixed);
            if let Some(prefix) = prefix {
                query.append_pair("prefix", prefix);
            }
            match (token, start) {
                (Some(token), _) => query.append_pair(token_name, token),
                (None, Some(start)) => query.append_pair(start_name, start),
                (None, None) => &mut query,
            };
        }
        Ok(url)
    }

    /// One list request, retried as `[stores.retry]` says while the store
    /// does not answer, is busy or fails on its side.
    async fn fetch(&self, url: &url::Url) -> Result<bytes::Bytes, String> {
        let started = Instant::now();
        let mut backoff = self.retry.backoff.init_backoff;
        let mut retries = 0;
        loop {
            let outcome = match self.cloud.signed_get(url.as_str()).await {
                Ok(request) => send(request, &self.options).await,
                Err(e) => Err(e),
            };
            let failure = match outcome {
                Ok((200, body)) => return Ok(body),
                Ok((status, body)) => {
                    let retryable = status == 408 || status == 429 || status >= 500;
                    (retryable, refused(status, &body))
                }
                Err(SendError::Transport(e)) => (true, format!("the list request failed: {e}")),
                Err(SendError::Request(e)) => (false, format!("the list request failed: {e}")),
            };
            let (retryable, message) = failure;
            let elapsed = started.elapsed();
            if !retryable
                || retries >= self.retry.max_retries
                || elapsed >= self.retry.retry_timeout
            {
                return Err(match retries {
                    0 => message,
                    n => format!("{message} (after {n} retries)"),
                });
            }
            let wait = backoff.min(self.retry.retry_timeout.saturating_sub(elapsed));
            tracing::debug!(retry = retries + 1, wait_ms = wait.as_millis() as u64, %message, "list request retried");
            tokio::time::sleep(wait).await;
            backoff = Duration::from_secs_f64(
                (backoff.as_secs_f64() * self.retry.backoff.base)
                    .min(self.retry.backoff.max_backoff.as_secs_f64()),
            );
            retries += 1;
        }
    }

    /// One page, requested and read.
    async fn page(&self, span: &Span, token: Option<&str>) -> Result<Page, String> {
        let url = self.page_url(span.prefix.as_deref(), span.start.as_deref(), token)?;
        let body = self.fetch(&url).await?;
        match &self.cloud {
            Cloud::Azure { .. } => azure_page(&body),
            Cloud::Gcs { .. } => gcs_page(&body),
            Cloud::S3 { .. } => s3_page(&body),
        }
    }

    /// What the scan gets for one listed key.
    fn listed(&self, raw: RawKey) -> Listed {
        let object = match raw {
            RawKey::Text(object) => object,
            RawKey::NotUtf8(encoded) => {
                return Listed::Problem {
                    name: self.relative(&encoded).escape_debug().to_string(),
                    reason: "the store lists this key, but it is not UTF-8 text (shown URL-encoded): kept, never deleted; rename the object".into(),
                    kind: ProblemKind::Unrepresentable,
                };
            }
        };
        let key = object.key.as_str();
        let relative = match &self.prefix {
            Some(prefix) => key.strip_prefix(prefix.as_str()),
            None => Some(key),
        };
        let Some(relative) = relative else {
            return Listed::Problem {
                name: key.escape_debug().to_string(),
                reason: format!(
                    "listed under the prefix {} but outside it",
                    self.prefix.as_deref().unwrap_or_default()
                ),
                kind: ProblemKind::Unrepresentable,
            };
        };
        if let Some(why) = unaddressable(key, object.size) {
            return Listed::Problem {
                name: relative.escape_debug().to_string(),
                reason: format!(
                    "the store lists this key, but it cannot be addressed exactly ({why}): kept, never deleted; rename the object to a key without it"
                ),
                kind: ProblemKind::Unrepresentable,
            };
        }
        match Path::parse(relative) {
            Ok(location) => Listed::Object(ObjectMeta {
                location,
                last_modified: object.last_modified,
                size: object.size,
                e_tag: object.e_tag,
                version: None,
            }),
            // The exact key is addressable, so its part past the prefix is.
            Err(e) => Listed::Problem {
                name: relative.escape_debug().to_string(),
                reason: e.to_string(),
                kind: ProblemKind::Unrepresentable,
            },
        }
    }

    fn relative<'k>(&self, key: &'k str) -> &'k str {
        match &self.prefix {
            Some(p) => key.strip_prefix(p.as_str()).unwrap_or(key),
            None => key,
        }
    }
}

/// What one listing covers: keys under `prefix`, from after `start`.
struct Span {
    prefix: Option<String>,
    start: Option<String>,
}

/// Where the listing stands.
struct Cursor {
    /// The next page's token; `None` before the first page.
    token: Option<String>,
    done: bool,
}

impl Paged {
    fn stream(&self, span: Span) -> EntryStream {
        let cursor = Cursor {
            token: None,
            done: false,
        };
        futures::stream::unfold(
            (self.clone(), span, cursor),
            |(this, span, mut cursor)| async move {
                if cursor.done {
                    return None;
                }
                let items: Vec<Result<Listed, BoxError>> =
                    match this.page(&span, cursor.token.as_deref()).await {
                        Err(e) => {
                            cursor.done = true;
                            vec![Err(e.into())]
                        }
                        Ok(page) => {
                            let items = page.objects.into_iter().map(|raw| Ok(this.listed(raw)));
                            let mut items: Vec<_> = items.collect();
                            match page.next {
                                // A store that hands back the token it was given
                                // would be listed forever.
                                Some(next) if cursor.token.as_deref() == Some(next.as_str()) => {
                                    items.push(Err(
                                        "the store gave the same continuation token twice: listing stops here".into(),
                                    ));
                                    cursor.done = true;
                                }
                                Some(next) => cursor.token = Some(next),
                                None => cursor.done = true,
                            }
                            items
                        }
                    };
                Some((futures::stream::iter(items), (this, span, cursor)))
            },
        )
        .flatten()
        .boxed()
    }
}

impl Entries for Paged {
    fn entries(&self) -> EntryStream {
        self.stream(Span {
            prefix: self.prefix.clone(),
            start: None,
        })
    }

    fn protect(&self, _paths: &[std::path::PathBuf]) {}

    fn range(&self, folder: &str, start_after: Option<&str>) -> Option<EntryStream> {
        let own = self.prefix.as_deref().unwrap_or_default();
        let prefix = format!("{own}{folder}");
        Some(self.stream(Span {
            prefix: (!prefix.is_empty()).then_some(prefix),
            start: start_after.map(|s| format!("{own}{s}")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(page: &Page) -> Vec<String> {
        page.objects
            .iter()
            .map(|k| match k {
                RawKey::Text(o) => o.key.clone(),
                RawKey::NotUtf8(e) => format!("not-utf8:{e}"),
            })
            .collect()
    }

    #[test]
    fn s3_pages_are_read_key_by_exact_key() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>calls</Name><Prefix>t%2F</Prefix><KeyCount>4</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
<Contents><Key>t/a//b.wav</Key><LastModified>2024-12-01T10:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>t/x%01y+z%2B.wav</Key><LastModified>2024-12-01T10:00:00Z</LastModified><ETag>"d"</ETag><Size>0</Size></Contents>
<Contents><Key>t/dir/</Key><LastModified>2024-12-01T10:00:00.000Z</LastModified><Size>0</Size></Contents>
<Contents><Key>t/%FF.wav</Key><LastModified>2024-12-01T10:00:00.000Z</LastModified><Size>1</Size></Contents>
<NextContinuationToken>1/abc=</NextContinuationToken></ListBucketResult>"#;
        let page = s3_page(body).unwrap();
        assert_eq!(
            keys(&page),
            [
                "t/a//b.wav",
                "t/x\u{1}y z+.wav",
                "t/dir/",
                "not-utf8:t/%FF.wav"
            ]
        );
        assert_eq!(page.next.as_deref(), Some("1/abc="));
        let RawKey::Text(first) = &page.objects[0] else {
            panic!()
        };
        assert_eq!((first.size, first.e_tag.as_deref()), (5, Some("\"abc\"")));
        // Not URL-encoded (a store that ignores encoding-type): keys as written.
        let plain = br#"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a+b%41</Key><LastModified>2024-12-01T10:00:00.000Z</LastModified><Size>1</Size></Contents></ListBucketResult>"#;
        let page = s3_page(plain).unwrap();
        assert_eq!((keys(&page), page.next), (vec!["a+b%41".to_string()], None));
        let empty = br#"<ListBucketResult><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>"#;
        assert_eq!(s3_page(empty).unwrap().objects, vec![]);
        // More keys, and no way to ask for them: an error, not a short listing.
        let cut = br#"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"#;
        assert!(s3_page(cut).unwrap_err().contains("no continuation token"));
        assert!(s3_page(b"<html>proxy error</html>").is_err());
    }

    #[test]
    fn gcs_pages_are_read_from_the_json_api() {
        let body = br#"{"kind":"storage#objects","nextPageToken":"t/b","items":[{"kind":"storage#object","name":"t/a\u0001//b.wav","size":"5","updated":"2026-12-01T15:44:39.493563Z","etag":"CJ+A","generation":"1"}]}"#;
        let page = gcs_page(body).unwrap();
        assert_eq!(keys(&page), ["t/a\u{1}//b.wav"]);
        assert_eq!(page.next.as_deref(), Some("t/b"));
        let RawKey::Text(first) = &page.objects[0] else {
            panic!()
        };
        assert_eq!((first.size, first.e_tag.as_deref()), (5, Some("CJ+A")));
        let last = br#"{"kind":"storage#objects"}"#;
        assert_eq!(
            gcs_page(last).unwrap(),
            Page {
                objects: vec![],
                next: None
            }
        );
        assert!(gcs_page(br#"{"error":{"code":401}}"#).is_err());
        assert!(gcs_page(br#"{"kind":"storage#objects","items":[{"name":"a","size":"x","updated":"2026-12-01T00:00:00Z"}]}"#).is_err());
    }

    #[test]
    fn azure_pages_are_read_with_encoded_names_and_without_folders() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="c"><Prefix>t/</Prefix><Blobs>
<Blob><Name>t/a//b.wav</Name><Properties><Last-Modified>Sun, 01 Dec 2024 10:00:00 GMT</Last-Modified><Etag>0x8D</Etag><Content-Length>5</Content-Length><Content-Type>audio/wav</Content-Type><BlobType>BlockBlob</BlobType></Properties></Blob>
<Blob><Name Encoded="true">t/x%01y.wav</Name><Properties><Last-Modified>Sun, 01 Dec 2024 10:00:00 GMT</Last-Modified><Content-Length>1</Content-Length></Properties></Blob>
<Blob><Name>t/folder</Name><Properties><Last-Modified>Sun, 01 Dec 2024 10:00:00 GMT</Last-Modified><Content-Length>0</Content-Length><ResourceType>directory</ResourceType></Properties></Blob>
<Blob><Name>t/a+b%41.wav</Name><Properties><Last-Modified>Sun, 01 Dec 2024 10:00:00 GMT</Last-Modified><Content-Length>1</Content-Length></Properties></Blob>
</Blobs><NextMarker>2!96!MDAw</NextMarker></EnumerationResults>"#;
        let page = azure_page(body).unwrap();
        assert_eq!(keys(&page), ["t/a//b.wav", "t/x\u{1}y.wav", "t/a+b%41.wav"]);
        assert_eq!(page.next.as_deref(), Some("2!96!MDAw"));
        let RawKey::Text(first) = &page.objects[0] else {
            panic!()
        };
        assert_eq!(
            first.last_modified.to_rfc3339(),
            "2024-12-01T10:00:00+00:00"
        );
        let last = br#"<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>"#;
        assert_eq!(
            azure_page(last).unwrap(),
            Page {
                objects: vec![],
                next: None
            }
        );
        assert!(azure_page(b"<html><body>sign in</body></html>").is_err());
    }

    #[test]
    fn only_keys_a_path_represents_exactly_are_objects() {
        for ok in [
            "a",
            "a/b.wav",
            "calls/2024/x y+z%41.wav",
            "z😀a.wav",
            "a/b c",
        ] {
            assert_eq!(unaddressable(ok, 1), None, "{ok}");
        }
        let why = |k: &str, size| unaddressable(k, size).unwrap();
        assert_eq!(why("a//b", 1), "an empty segment (`//`)");
        assert_eq!(why("a/./b", 1), "a `.` segment");
        assert_eq!(why("a/../b", 1), "a `..` segment");
        assert_eq!(why("a/b\u{1}.wav", 1), "a control character (U+0001)");
        assert_eq!(why("a/b.wav/", 1), "a trailing `/`");
        assert!(why("a/b/", 0).starts_with("a folder marker"));
        assert_eq!(why("/a/b.wav", 1), "a leading `/`");
        assert!(why("a/b\u{FFFD}.wav", 1).starts_with("a replacement character"));
    }

    #[test]
    fn a_refused_request_says_what_the_store_said() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied\x07</Message></Error>";
        assert_eq!(
            refused(403, body),
            "the store answered the list request with HTTP 403: AccessDenied: Access Denied"
        );
        assert_eq!(
            refused(502, b"bad gateway"),
            "the store answered the list request with HTTP 502"
        );
    }
}
