//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Certificates, manifest lines and ledger rows are hashed and signed, so the
//! bytes must not depend on how a serializer happens to order keys or format
//! numbers. JCS fixes both: object members sorted by their UTF-16 code units,
//! numbers in the ECMAScript `Number.prototype.toString` form, strings with the
//! minimal escaping. It is small enough to own and is tested against the
//! published conformance vectors (`tests/data/jcs`).

use serde::Serialize;
use serde_json::Value;

mod ser;

pub use ser::write;

/// Canonical JSON bytes of any serializable value, written straight from it
/// (see [`write`]).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

/// Canonical JSON bytes of a parsed JSON value.
pub fn value_to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out);
    out
}

/// RFC 8785 §3.2.3 member order: by UTF-16 code units. For ASCII names (all
/// of lethe's own) that is byte order, without transcoding.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Appends the canonical form of `value` to `out`.
pub fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            // RFC 8785 §3.2.3: sort by the UTF-16 code units of the names.
            members.sort_by(|(a, _), (b, _)| utf16_order(a, b));
            out.push(b'{');
            for (i, (name, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_value(member, out);
            }
            out.push(b'}');
        }
    }
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    // Integers that an IEEE 754 double holds exactly print as themselves; this
    // is the common case (counts, sizes, sequence numbers) and avoids a float
    // round trip.
    const EXACT: u64 = 1 << 53;
    if let Some(u) = n.as_u64().filter(|u| *u <= EXACT) {
        out.extend_from_slice(u.to_string().as_bytes());
        return;
    }
    if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= EXACT) {
        out.extend_from_slice(i.to_string().as_bytes());
        return;
    }
    // Everything else is a double, printed the way ECMAScript prints it.
    let f = n.as_f64().unwrap_or(0.0);
    if f == 0.0 {
        out.push(b'0');
        return;
    }
    let mut buf = ryu_js::Buffer::new();
    out.extend_from_slice(buf.format_finite(f).as_bytes());
}

pub fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let mut start = 0;
    for (i, byte) in s.bytes().enumerate() {
        let escape: Option<&[u8]> = match byte {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&s.as_bytes()[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
        }
        start = i + 1;
    }
    out.extend_from_slice(&s.as_bytes()[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(json: &str) -> String {
        let v: Value = serde_json::from_str(json).unwrap();
        String::from_utf8(value_to_vec(&v)).unwrap()
    }

    #[test]
    fn sorts_members_and_strips_whitespace() {
        assert_eq!(
            canon(r#"{ "b": 1, "a": [true, null] }"#),
            r#"{"a":[true,null],"b":1}"#
        );
    }

    #[test]
    fn escapes_minimally() {
        assert_eq!(
            canon(r#""a\u0001\n\u00e9\u2028/""#),
            "\"a\\u0001\\n\u{e9}\u{2028}/\""
        );
    }

    #[test]
    fn numbers_follow_ecmascript() {
        assert_eq!(
            canon("[1.0, -0.0, 1e21, 1e-7, 123456789012345680000]"),
            "[1,0,1e+21,1e-7,123456789012345680000]"
        );
    }
}
