//! The stored model (`Book`, serialized like gorm's `gorm.Model` embedding)
//! and the input type (`BookInput`), kept separate so clients can never set
//! ids or timestamps.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::AppError;

/// Longest accepted `title` / `author`, in characters (Unicode code points,
/// as JSON Schema's `maxLength` counts). A bound the Go original lacks.
pub const MAX_TEXT_CHARS: usize = 1000;

/// A book as stored and returned (field names as the Go version's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Book {
    #[serde(rename = "ID")]
    #[schema(example = 1)]
    pub id: i64,
    #[serde(rename = "CreatedAt", with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2024-05-01T10:00:00.123456Z")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(rename = "UpdatedAt", with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2024-05-01T10:00:00.123456Z")]
    pub updated_at: Option<OffsetDateTime>,
    /// Always null: deleted books are never returned.
    #[serde(rename = "DeletedAt", with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deleted_at: Option<OffsetDateTime>,
    #[schema(example = "The Go Programming Language")]
    pub title: String,
    #[schema(example = "Alan A. A. Donovan")]
    pub author: String,
    #[schema(example = 2015)]
    pub year: i64,
}

impl Book {
    /// Appends the book's JSON, byte for byte what its `Serialize` writes,
    /// without serde's map machinery (the response is most of a GET by id's
    /// serialization cost; see the README's profile).
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), time::error::Format> {
        out.extend_from_slice(b"{\"ID\":");
        push_i64(out, self.id);
        for (key, ts) in [
            (&b",\"CreatedAt\":"[..], self.created_at),
            (&b",\"UpdatedAt\":"[..], self.updated_at),
            (&b",\"DeletedAt\":"[..], self.deleted_at),
        ] {
            out.extend_from_slice(key);
            match ts {
                Some(ts) => {
                    out.push(b'"');
                    ts.format_into(out, &time::format_description::well_known::Rfc3339)?;
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b",\"title\":");
        serde_json::to_writer(&mut *out, &self.title).expect("a string serializes");
        out.extend_from_slice(b",\"author\":");
        serde_json::to_writer(&mut *out, &self.author).expect("a string serializes");
        out.extend_from_slice(b",\"year\":");
        push_i64(out, self.year);
        out.push(b'}');
        Ok(())
    }
}

fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    let mut m = n.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Body of `POST /api/v1/book` and `PUT /api/v1/book/{id}`, accepted as the
/// Go original's `encoding/json` decoder accepts it: keys matched without
/// regard to ASCII case (the last one wins), unknown keys ignored, `null`
/// leaves a field unset, only the first JSON value of the body is read.
/// Then validated as the original does (`title`, `author` non-empty, `year`
/// non-zero), plus our bounds: `title`/`author` at most 1000 characters and
/// without NUL (U+0000), which PostgreSQL `text` cannot store.
///
/// `year` is any integral JSON number in the 64-bit range except 0. Unlike
/// Go's decoder we also take an integral number written with a fraction or
/// exponent (`1084.0`, `2e3`): JSON Schema — and so the OpenAPI document and
/// the clients generated from it — counts those as integers.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BookInput {
    /// Required, 1 to 1000 characters, no NUL (U+0000).
    #[schema(example = "The Go Programming Language", min_length = 1, max_length = 1000, pattern = "^[^\\u0000]*$")]
    pub title: String,
    /// Required, 1 to 1000 characters, no NUL (U+0000).
    #[schema(example = "Alan A. A. Donovan", min_length = 1, max_length = 1000, pattern = "^[^\\u0000]*$")]
    pub author: String,
    /// Required: a non-zero integer (64-bit).
    #[schema(example = 2015)]
    pub year: i64,
}

/// What the decoder saw for one field, as Go's decoder would leave it.
#[derive(Default)]
struct Decoded<T> {
    value: Option<T>,
    /// The field held a value of the wrong type (Go: `UnmarshalTypeError`).
    wrong_type: bool,
}

#[derive(Default)]
struct RawInput {
    title: Decoded<String>,
    author: Decoded<String>,
    year: Decoded<i64>,
    /// Order of the first type error, so the earliest one is named (as Go does).
    first_error: Option<&'static str>,
}

/// A JSON string, null (leave the field as it is) or another type.
enum Text {
    Value(String),
    Null,
    WrongType,
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text::Value(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text::Value(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text::WrongType)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text::WrongType)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text::WrongType)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text::WrongType)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Text::WrongType)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Text::WrongType)
            }
        }
        d.deserialize_any(V)
    }
}

/// A year: integral number in the i64 range, null, or something else.
enum Year {
    Value(i64),
    Null,
    NotAnInteger,
}

impl<'de> Deserialize<'de> for Year {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Decided from the number's text, never from serde_json's f64: a
        // number with a fraction or exponent, or beyond the 64-bit range,
        // is parsed as f64, which rounds past 2^53 (-9223372036854775809
        // would be stored as -2^63, 100000000000000000.5 as an integer).
        let raw = <&'de serde_json::value::RawValue>::deserialize(d)?;
        let text = raw.get().trim();
        Ok(match text.as_bytes().first() {
            Some(b'n') => Year::Null,
            Some(b'-' | b'0'..=b'9') => exact_integer(text).map_or(Year::NotAnInteger, Year::Value),
            _ => Year::NotAnInteger,
        })
    }
}

/// The integer a JSON number literal (syntax already checked by serde_json)
/// denotes exactly, if it is one in the i64 range: `2e3` and `1084.0` are,
/// `2000.5`, `5e-1` and `9223372036854775808` are not.
fn exact_integer(text: &str) -> Option<i64> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = rest.split_once(['e', 'E']).unwrap_or((rest, "0"));
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // Saturated: an exponent beyond a billion decides the answer by itself.
    let (exp_negative, exp_digits) = match exponent.as_bytes().first() {
        Some(b'-') => (true, &exponent[1..]),
        Some(b'+') => (false, &exponent[1..]),
        _ => (false, exponent),
    };
    let exp = exp_digits.bytes().fold(0i64, |e, b| (e * 10 + i64::from(b - b'0')).min(1_000_000_000));
    let exp = if exp_negative { -exp } else { exp };
    // value = digits × 10^scale, digits without leading or trailing zeros.
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let first = digits.iter().position(|&b| b != b'0');
    let Some(first) = first else { return Some(0) };
    let last = digits.iter().rposition(|&b| b != b'0').unwrap();
    let significant = &digits[first..=last];
    let scale = exp - frac.len() as i64 + (digits.len() - 1 - last) as i64;
    // A fraction left over; or more digits than 2^63 has (19).
    if scale < 0 || significant.len() as i64 + scale > 19 {
        return None;
    }
    let mut value = significant.iter().fold(0i128, |v, &b| v * 10 + i128::from(b - b'0'));
    for _ in 0..scale {
        value *= 10;
    }
    i64::try_from(if negative { -value } else { value }).ok()
}

impl<'de> Deserialize<'de> for RawInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawInput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            // `null` decodes to nothing at all in Go: every field stays unset.
            fn visit_unit<E: de::Error>(self) -> Result<RawInput, E> {
                Ok(RawInput::default())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawInput, A::Error> {
                let mut raw = RawInput::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let text_field = |raw: &mut RawInput, name: &'static str, t: Text| {
                        let field = if name == "title" { &mut raw.title } else { &mut raw.author };
                        match t {
                            Text::Null => {}
                            Text::WrongType => {
                                field.wrong_type = true;
                                raw.first_error.get_or_insert(name);
                            }
                            Text::Value(s) => field.value = Some(s),
                        }
                    };
                    if key.eq_ignore_ascii_case("title") {
                        let t = map.next_value::<Text>()?;
                        text_field(&mut raw, "title", t);
                    } else if key.eq_ignore_ascii_case("author") {
                        let t = map.next_value::<Text>()?;
                        text_field(&mut raw, "author", t);
                    } else if key.eq_ignore_ascii_case("year") {
                        match map.next_value::<Year>()? {
                            Year::Value(y) => raw.year.value = Some(y),
                            Year::Null => {}
                            Year::NotAnInteger => {
                                raw.year.wrong_type = true;
                                raw.first_error.get_or_insert("year");
                            }
                        }
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_any(V)
    }
}

impl BookInput {
    /// Parses and validates a body, naming the first field at fault.
    pub fn from_json(body: &[u8]) -> Result<Self, AppError> {
        // Like Go's json.Decoder: read one value, ignore what follows it.
        let mut de = serde_json::Deserializer::from_slice(body);
        let raw = RawInput::deserialize(&mut de).map_err(|e| {
            if e.is_data() {
                AppError::validation("body", "body must be a JSON object")
            } else {
                AppError::validation("body", format!("malformed JSON: {e}"))
            }
        })?;
        if let Some(field) = raw.first_error {
            let what = if field == "year" { "an integer" } else { "a string" };
            return Err(AppError::validation(field, format!("{field} must be {what}")));
        }
        let title = text(raw.title.value, "title")?;
        let author = text(raw.author.value, "author")?;
        let year = match raw.year.value {
            None | Some(0) => return Err(AppError::validation("year", "year is required (a non-zero integer)")),
            Some(y) => y,
        };
        Ok(BookInput { title, author, year })
    }
}

fn text(value: Option<String>, name: &'static str) -> Result<String, AppError> {
    match value {
        None => Err(AppError::validation(name, format!("{name} is required"))),
        Some(s) if s.is_empty() => Err(AppError::validation(name, format!("{name} is required"))),
        Some(s) if s.chars().count() > MAX_TEXT_CHARS => {
            Err(AppError::validation(name, format!("{name} must be at most {MAX_TEXT_CHARS} characters")))
        }
        // PostgreSQL `text` cannot hold U+0000 (the insert would fail with
        // "invalid byte sequence for encoding UTF8: 0x00"): refused here,
        // before any query.
        Some(s) if s.contains('\0') => {
            Err(AppError::validation(name, format!("{name} must not contain the NUL character (U+0000)")))
        }
        Some(s) => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_integer_takes_only_integral_numbers_in_the_64_bit_range_exactly() {
        for (text, want) in [
            ("0", Some(0)),
            ("-0", Some(0)),
            ("-0.0e5", Some(0)),
            ("2015", Some(2015)),
            ("1084.0", Some(1084)),
            ("2e3", Some(2000)),
            ("2.015E+3", Some(2015)),
            ("1200e-2", Some(12)),
            ("0.5e1", Some(5)),
            ("9223372036854775807", Some(i64::MAX)),
            ("9223372036854775807.000", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("-9.223372036854775808e18", Some(i64::MIN)),
            ("1234567890123456789.0", Some(1_234_567_890_123_456_789)),
            ("1e18", Some(1_000_000_000_000_000_000)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("1e19", None),
            ("2000.5", None),
            ("5e-1", None),
            ("12345e-2", None),
            ("100000000000000000.5", None),
            ("9223372036854775806.5", None),
            ("1e300", None),
            ("1e99999999999999999999", None),
            ("1e-99999999999999999999", None),
        ] {
            assert_eq!(exact_integer(text), want, "{text}");
        }
    }

    #[test]
    fn hand_written_json_is_byte_identical_to_serde() {
        let ts = |s: &str| Some(OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap());
        for book in [
            Book {
                id: 1,
                created_at: ts("2023-01-02T03:04:05.123456Z"),
                updated_at: ts("2023-01-03T22:00:00Z"),
                deleted_at: None,
                title: "Quotes \" and \\ and \u{1} and ünïcode 😀".into(),
                author: "A".into(),
                year: -500,
            },
            Book { id: i64::MAX, created_at: None, updated_at: None, deleted_at: ts("2024-05-01T10:00:00.5+02:00"), title: String::new(), author: "x".repeat(3), year: i64::MIN },
        ] {
            let mut out = Vec::new();
            book.write_json(&mut out).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&book).unwrap());
        }
    }
}
