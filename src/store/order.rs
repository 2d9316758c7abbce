//! The order in which a store lists its keys, as far as lethe relies on it.
//!
//! The scan infers that a sidecar is absent when a sorted listing went past
//! its place without showing it, so it must compare keys by the very rule
//! the store sorts by: S3 and GCS sort by the UTF-8 bytes of the key, Azure
//! Blob by its UTF-16 code units (they disagree where a character above
//! U+FFFF meets one between U+E000 and U+FFFF: `😀` sorts before `！` on
//! Azure, after it on S3), and lethe's own walk of a local folder lists a
//! folder's entries in byte order of their names, each subfolder's whole
//! subtree at its name's place (so `d/b/x` comes before `d/b.json`, which
//! sorts first by bytes). A store that promises no order (an S3 directory
//! bucket, an S3-compatible service whose order is not known) is listed
//! without any inference.

use std::cmp::Ordering;

use crate::config::ListingOrderSetting;

use super::Cloud;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListingOrder {
    /// No order is relied on: every sidecar is fetched.
    Unordered,
    /// Increasing UTF-8 bytes of the whole key (S3 general purpose buckets, GCS).
    Utf8,
    /// Increasing UTF-16 code units of the whole key (Azure Blob).
    Utf16,
    /// lethe's walk of a local folder: by path component, each compared by bytes.
    Walk,
}

impl ListingOrder {
    /// Compares two keys (or two names in one folder) as the store orders them.
    pub fn cmp(self, a: &str, b: &str) -> Ordering {
        match self {
            ListingOrder::Unordered | ListingOrder::Utf8 => a.as_bytes().cmp(b.as_bytes()),
            ListingOrder::Utf16 => utf16_cmp(a, b),
            ListingOrder::Walk => a.split('/').cmp(b.split('/')),
        }
    }

    pub fn is_sorted(self) -> bool {
        self != ListingOrder::Unordered
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ListingOrder::Unordered => "unordered",
            ListingOrder::Utf8 => "utf-8",
            ListingOrder::Utf16 => "utf-16",
            ListingOrder::Walk => "walk",
        }
    }

    /// The order of a local folder: lethe's walk, unless the operator says
    /// to rely on no order.
    pub(super) fn local(setting: Option<ListingOrderSetting>) -> Self {
        match setting {
            Some(ListingOrderSetting::Unordered) => ListingOrder::Unordered,
            _ => ListingOrder::Walk,
        }
    }

    /// The order of a cloud store: the operator's setting, else what its kind
    /// promises. An S3 bucket is relied on only on AWS itself (no custom
    /// endpoint) and when it is not a directory bucket (`--x-s3`): S3
    /// Express One Zone promises no order, and S3-compatible services differ.
    pub(super) fn cloud(cloud: &Cloud, setting: Option<ListingOrderSetting>) -> Self {
        let lexicographic = match cloud {
            Cloud::Azure { .. } => ListingOrder::Utf16,
            Cloud::S3 { .. } | Cloud::Gcs { .. } => ListingOrder::Utf8,
        };
        match setting {
            Some(ListingOrderSetting::Unordered) => ListingOrder::Unordered,
            Some(ListingOrderSetting::Lexicographic) => lexicographic,
            None => match cloud {
                Cloud::S3 {
                    endpoint, bucket, ..
                } if endpoint.is_some() || bucket.ends_with("--x-s3") => ListingOrder::Unordered,
                _ => lexicographic,
            },
        }
    }
}

/// Compares by UTF-16 code units without allocating. Code points below
/// U+D800 or from U+E000 to U+FFFF are one unit of their own value; those
/// above U+FFFF are two units starting with a high surrogate (U+D800 to
/// U+DBFF), so they sort after the first range and before the second.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    let key = |c: char| -> u32 {
        let c = c as u32;
        match c {
            0..0xD800 => c,
            0xE000..=0xFFFF => c + 0x10_0000,
            // Surrogate pairs: between the two, in code point order.
            _ => c - 0x1_0000 + 0xD800,
        }
    };
    let mut a = a.chars();
    let mut b = b.chars();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => return key(x).cmp(&key(y)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(order: ListingOrder, a: &str, b: &str, expected: Ordering) {
        assert_eq!(order.cmp(a, b), expected, "{order:?}: {a:?} vs {b:?}");
        assert_eq!(
            order.cmp(b, a),
            expected.reverse(),
            "{order:?}: {b:?} vs {a:?}"
        );
    }

    #[test]
    fn azure_compares_utf16_code_units_s3_and_gcs_utf8_bytes() {
        use Ordering::*;
        // U+1F600 (a surrogate pair, D83D DE00) against U+FF01 (one unit, FF01).
        check(ListingOrder::Utf16, "z😀a.wav", "z！b.wav", Less);
        check(ListingOrder::Utf8, "z😀a.wav", "z！b.wav", Greater);
        // Below the surrogates, both agree with code point order.
        check(ListingOrder::Utf16, "zéa", "z中b", Less);
        check(ListingOrder::Utf8, "zéa", "z中b", Less);
        check(ListingOrder::Utf16, "a", "a😀", Less);
        check(ListingOrder::Utf16, "a.json", "a.wav", Less);
        check(ListingOrder::Utf16, "same", "same", Equal);
        // Two characters above U+FFFF keep code point order.
        check(ListingOrder::Utf16, "😀", "🙂", Less);
        check(ListingOrder::Utf16, "\u{10000}", "\u{10FFFF}", Less);
        check(ListingOrder::Utf16, "\u{D7FF}", "\u{10000}", Less);
        check(ListingOrder::Utf16, "\u{10FFFF}", "\u{E000}", Less);
    }

    #[test]
    fn utf16_order_agrees_with_encoding_every_pair_of_boundary_characters() {
        let chars = [
            '\0',
            'a',
            '/',
            '\u{7F}',
            '\u{80}',
            '\u{7FF}',
            '\u{800}',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FF01}',
            '\u{FFFF}',
            '\u{10000}',
            '\u{1F600}',
            '\u{10FFFF}',
        ];
        for x in chars {
            for y in chars {
                let (a, b) = (format!("k{x}1"), format!("k{y}0"));
                let expected = a.encode_utf16().cmp(b.encode_utf16());
                assert_eq!(utf16_cmp(&a, &b), expected, "{x:?} {y:?}");
            }
        }
    }

    #[test]
    fn the_local_walk_orders_by_path_component() {
        use Ordering::*;
        // A subfolder's subtree comes at its name's place, before longer names.
        check(ListingOrder::Walk, "d/b/x.wav", "d/b.json", Less);
        check(ListingOrder::Utf8, "d/b/x.wav", "d/b.json", Greater);
        check(ListingOrder::Walk, "a/x", "a-b", Less);
        check(ListingOrder::Walk, "d/a.json", "d/a.wav", Less);
        check(ListingOrder::Walk, "d/z.wav", "e/a.wav", Less);
        check(ListingOrder::Walk, "a.wav", "x/01/02/z.wav", Less);
    }

    fn s3(bucket: &str, endpoint: Option<&str>) -> Cloud {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .build()
            .unwrap();
        Cloud::S3 {
            store: std::sync::Arc::new(store),
            endpoint: endpoint.map(str::to_string),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            virtual_hosted: false,
            skip_signature: false,
        }
    }

    #[test]
    fn a_store_is_relied_on_to_be_sorted_only_where_its_kind_promises_it() {
        use ListingOrder::*;
        let lexicographic = Some(ListingOrderSetting::Lexicographic);
        let unordered = Some(ListingOrderSetting::Unordered);
        let aws = s3("recordings", None);
        assert_eq!(ListingOrder::cloud(&aws, None), Utf8);
        assert_eq!(ListingOrder::cloud(&aws, unordered), Unordered);
        // S3 Express One Zone directory buckets promise no order.
        let express = s3("recordings--euw1-az1--x-s3", None);
        assert_eq!(ListingOrder::cloud(&express, None), Unordered);
        // An S3-compatible service: only if the operator says so.
        let minio = s3("recordings", Some("https://minio.internal:9000"));
        assert_eq!(ListingOrder::cloud(&minio, None), Unordered);
        assert_eq!(ListingOrder::cloud(&minio, lexicographic), Utf8);
        let azure = object_store::azure::MicrosoftAzureBuilder::new()
            .with_use_emulator(true)
            .with_container_name("c")
            .build()
            .unwrap();
        let azure = Cloud::Azure {
            store: std::sync::Arc::new(azure),
            account: "devstoreaccount1".into(),
            container: "c".into(),
            endpoint: "http://127.0.0.1:10000/devstoreaccount1".into(),
        };
        assert_eq!(ListingOrder::cloud(&azure, None), Utf16);
        assert_eq!(ListingOrder::cloud(&azure, lexicographic), Utf16);
        assert_eq!(ListingOrder::local(None), Walk);
        assert_eq!(ListingOrder::local(unordered), Unordered);
    }
}
