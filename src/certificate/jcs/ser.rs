//! A `serde::Serializer` that writes RFC 8785 canonical JSON straight from a
//! typed value, with no `serde_json::Value` built on the way: the bytes are
//! those `serde_json::to_value` followed by [`super::write_value`] gives
//! (the same member order, number forms, escapes, non-string map keys
//! turned into strings, non-finite floats as `null`, a repeated member name
//! keeping its last value), at a fraction of the allocations. Members are
//! written where they fall and reordered only when they came out of order;
//! a derived struct whose fields are declared in name order is never copied.

use std::borrow::Cow;

use serde::ser::{self, Impossible, Serialize};

use super::{utf16_order, write_number, write_string};

/// What cannot be written as canonical JSON.
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl From<Error> for serde_json::Error {
    fn from(e: Error) -> Self {
        <serde_json::Error as ser::Error>::custom(e.0)
    }
}

/// Appends the canonical JSON of `value` to `out`.
pub fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    value.serialize(Canonical { out })
}

pub struct Canonical<'a> {
    out: &'a mut Vec<u8>,
}

fn number(out: &mut Vec<u8>, n: serde_json::Number) {
    write_number(&n, out)
}

fn float(out: &mut Vec<u8>, f: f64) {
    match serde_json::Number::from_f64(f) {
        Some(n) => number(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Elements<'a>;
    type SerializeTuple = Elements<'a>;
    type SerializeTupleStruct = Elements<'a>;
    type SerializeTupleVariant = Elements<'a>;
    type SerializeMap = Members<'a>;
    type SerializeStruct = Members<'a>;
    type SerializeStructVariant = Members<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        number(self.out, v.into());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        number(self.out, v.into());
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        match i64::try_from(v) {
            Ok(v) => self.serialize_i64(v),
            Err(_) => match u64::try_from(v) {
                Ok(v) => self.serialize_u64(v),
                Err(_) => Err(Error("number out of range".into())),
            },
        }
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        u64::try_from(v)
            .map_err(|_| Error("number out of range".into()))
            .and_then(|v| self.serialize_u64(v))
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        float(self.out, v.into());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        float(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_string(v.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        use ser::SerializeMap;
        let mut map = self.serialize_map(Some(1))?;
        map.serialize_entry(variant, value)?;
        map.end()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Elements<'a>, Error> {
        self.out.push(b'[');
        Ok(Elements {
            out: self.out,
            first: true,
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Elements<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Elements<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Elements<'a>, Error> {
        // One member, the variant's name, whose value is the array.
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.extend_from_slice(b":[");
        Ok(Elements {
            out: self.out,
            first: true,
            variant: true,
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Members<'a>, Error> {
        Ok(Members::open(self.out, false))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Members<'a>, Error> {
        Ok(Members::open(self.out, false))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Members<'a>, Error> {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
        Ok(Members::open(self.out, true))
    }
}

/// An array being written.
pub struct Elements<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// Inside a tuple variant's one-member object.
    variant: bool,
}

impl Elements<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canonical { out: self.out })
    }
    fn close(self) -> Result<(), Error> {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// The four array-like serializer traits, all writing through
/// [`Elements::element`] and [`Elements::close`].
macro_rules! elements {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for Elements<'_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// One member written so far: its name and where `"name":value` lies,
/// relative to the object's start.
struct Member {
    name: Cow<'static, str>,
    start: usize,
    end: usize,
}

/// An object being written. Its members go out in the order they come,
/// comma-separated, each position remembered; if they did not come in
/// canonical order (or a name came twice), [`Members::close`] rewrites them.
pub struct Members<'a> {
    out: &'a mut Vec<u8>,
    /// Where the first member starts (just past `{`).
    start: usize,
    members: Vec<Member>,
    /// Whether the members so far are in strictly increasing order.
    ordered: bool,
    /// A map's key, written as a string, waiting for its value.
    key: Option<String>,
    /// Inside a struct variant's one-member object.
    variant: bool,
}

impl<'a> Members<'a> {
    fn open(out: &'a mut Vec<u8>, variant: bool) -> Self {
        out.push(b'{');
        let start = out.len();
        Members {
            out,
            start,
            members: Vec::new(),
            ordered: true,
            key: None,
            variant,
        }
    }

    fn member<T: Serialize + ?Sized>(
        &mut self,
        name: Cow<'static, str>,
        value: &T,
    ) -> Result<(), Error> {
        if let Some(last) = self.members.last() {
            self.out.push(b',');
            if utf16_order(&last.name, &name) != std::cmp::Ordering::Less {
                self.ordered = false;
            }
        }
        let start = self.out.len() - self.start;
        write_string(&name, self.out);
        self.out.push(b':');
        value.serialize(Canonical { out: self.out })?;
        let end = self.out.len() - self.start;
        self.members.push(Member { name, start, end });
        Ok(())
    }

    fn close(mut self) -> Result<(), Error> {
        if !self.ordered {
            let written = self.out.split_off(self.start);
            // Stable: of members with one name, the last one written wins
            // (as it does in a `serde_json::Map`).
            self.members.sort_by(|a, b| utf16_order(&a.name, &b.name));
            let mut first = true;
            for (i, m) in self.members.iter().enumerate() {
                if self
                    .members
                    .get(i + 1)
                    .is_some_and(|next| next.name == m.name)
                {
                    continue;
                }
                if !first {
                    self.out.push(b',');
                }
                first = false;
                self.out.extend_from_slice(&written[m.start..m.end]);
            }
        }
        self.out.push(b'}');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Members<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key.serialize(KeyName)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let name = self
            .key
            .take()
            .ok_or_else(|| Error("a map value without its key".into()))?;
        self.member(Cow::Owned(name), value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// Struct fields, of a struct or a struct variant: members by name.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Members<'_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.member(Cow::Borrowed(name), value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

/// A map key as the member name `serde_json` makes of it: strings as they
/// are, integers, booleans and chars as their text; anything else refused.
struct KeyName;

fn not_a_key() -> Error {
    Error("key must be a string".into())
}

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = Impossible<String, Error>;
    type SerializeTuple = Impossible<String, Error>;
    type SerializeTupleStruct = Impossible<String, Error>;
    type SerializeTupleVariant = Impossible<String, Error>;
    type SerializeMap = Impossible<String, Error>;
    type SerializeStruct = Impossible<String, Error>;
    type SerializeStructVariant = Impossible<String, Error>;

    fn serialize_bool(self, v: bool) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _: f32) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_f64(self, _: f64) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_char(self, v: char) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_none(self) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_unit(self) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(not_a_key())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(not_a_key())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(not_a_key())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(not_a_key())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;
    use serde_json::{Value, json};

    use super::super::{to_vec, value_to_vec};

    /// The direct path against the `Value` one.
    fn same<T: Serialize>(value: &T) -> String {
        let direct = to_vec(value).unwrap();
        let via_value = value_to_vec(&serde_json::to_value(value).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&direct),
            String::from_utf8_lossy(&via_value)
        );
        String::from_utf8(direct).unwrap()
    }

    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    enum Kind {
        Plain,
        Wrapped(u8),
        Pair(u8, String),
        Shaped { z: u8, a: Option<u8> },
    }

    #[derive(Serialize)]
    struct Unordered {
        zeta: u64,
        alpha: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        none: Option<u8>,
        nested: Vec<Kind>,
        #[serde(flatten)]
        extra: BTreeMap<String, Value>,
        bytes: serde_bytes_like::Bytes,
        float: f64,
        nan: f64,
        unit: (),
        tuple: (i8, char, bool),
        big: u64,
        neg: i64,
    }

    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn the_direct_path_writes_what_the_value_path_writes() {
        let mut extra = BTreeMap::new();
        extra.insert("Ω".to_string(), json!({"b": [1.5, -0.0, 1e21], "a": null}));
        extra.insert("\u{1F600}".to_string(), json!("\u{7f}\n\"\\"));
        extra.insert("alpha".to_string(), json!("the flattened one wins"));
        let value = Unordered {
            zeta: 1,
            alpha: "a\u{0001}b",
            none: None,
            nested: vec![
                Kind::Plain,
                Kind::Wrapped(7),
                Kind::Pair(1, "x".into()),
                Kind::Shaped { z: 2, a: None },
            ],
            extra,
            bytes: serde_bytes_like::Bytes(vec![0, 255]),
            float: 0.1 + 0.2,
            nan: f64::NAN,
            unit: (),
            tuple: (-3, 'é', true),
            big: u64::MAX,
            neg: i64::MIN,
        };
        let text = same(&value);
        assert!(
            text.contains(r#""alpha":"the flattened one wins""#),
            "{text}"
        );
        let mut keyed = HashMap::new();
        keyed.insert(10u32, "ten");
        keyed.insert(9u32, "nine");
        assert_eq!(same(&keyed), r#"{"10":"ten","9":"nine"}"#);
        same(&json!({"\u{e9}": 1, "e": 2, "\u{10000}": 3, "\u{ffff}": 4}));
        same(&Vec::<u8>::new());
        same(&BTreeMap::<String, u8>::new());
    }

    #[test]
    fn a_key_that_is_no_string_is_refused_as_serde_json_refuses_it() {
        let mut m = BTreeMap::new();
        m.insert(vec![1u8], 1);
        assert!(to_vec(&m).is_err());
        assert!(serde_json::to_value(&m).is_err());
    }
}
