//! Messages as SQS sees them: typed message attributes and how they are stored in a job's
//! string attributes, the MD5 digests SDKs check, body validation, and system attributes.
//!
//! Storage: an attribute of type `String` is stored as is, so native workers see it; any other
//! type is stored with its value as text (binary as base64) plus `sqs:type:<name>` holding the
//! type. Keys with a `:` can never be SQS attribute names, so they never collide.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use md5::{Digest, Md5};
use redrive_core::limits;
use redrive_core::model::{hex, Priority};
use serde::{Deserialize, Serialize};

use super::error::{self, SqsResult};

const TYPE_PREFIX: &str = "sqs:type:";
/// The deduplication id a FIFO message was sent with.
pub const DEDUP_KEY: &str = "sqs:dedup";
/// The `AWSTraceHeader` system attribute.
pub const TRACE_KEY: &str = "sqs:trace";
/// The message attribute that sets a job's priority.
pub const PRIORITY_ATTRIBUTE: &str = "redrive.priority";
/// SQS allows at most 10 message attributes.
const ATTRIBUTES_MAX: usize = limits::SQS_MESSAGE_ATTRIBUTES_COUNT_MAX;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeValue {
    pub data_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// Base64 on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<String>,
}

pub type Attributes = BTreeMap<String, AttributeValue>;

impl AttributeValue {
    fn is_binary(&self) -> bool {
        self.data_type.starts_with("Binary")
    }

    /// The bytes the digest covers: the string's UTF-8, or the decoded binary.
    fn value_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        if self.is_binary() {
            let b64 = self.binary_value.as_deref().unwrap_or_default();
            B64.decode(b64)
        } else {
            Ok(self.string_value.clone().unwrap_or_default().into_bytes())
        }
    }
}

/// Checks message (or system) attributes as SQS does.
pub fn check_attributes(attrs: &Attributes) -> SqsResult<()> {
    if attrs.len() > ATTRIBUTES_MAX {
        return Err(
            error::TOO_MANY_ATTRIBUTES.with(&[("count", &attrs.len()), ("max", &ATTRIBUTES_MAX)])
        );
    }
    for (name, v) in attrs {
        let lower = name.to_ascii_lowercase();
        let valid_name = !name.is_empty()
            && name.chars().count() <= limits::SQS_ATTRIBUTE_NAME_LENGTH_MAX
            // Letters and digits of any script (SQS takes `größe` or `名前`), `_`, `-`, `.`.
            && name.chars().all(|c| c.is_alphanumeric() || "_-.".contains(c))
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && !lower.starts_with("aws.")
            && !lower.starts_with("amazon.");
        if !valid_name {
            return Err(error::ATTRIBUTE_NAME_INVALID.with(&[("name", name)]));
        }
        let Some(base) = data_type_base(&v.data_type) else {
            return Err(error::ATTRIBUTE_TYPE_INVALID.with(&[("name", name)]));
        };
        let value = if v.is_binary() { &v.binary_value } else { &v.string_value };
        if value.as_deref().is_none_or(str::is_empty) {
            return Err(
                error::ATTRIBUTE_VALUE_EMPTY.with(&[("name", name), ("type", &v.data_type)])
            );
        }
        v.value_bytes().map_err(|_| error::ATTRIBUTE_NOT_BASE64.with(&[("name", name)]))?;
        if let Some(s) = &v.string_value {
            check_characters(s).map_err(|c| {
                error::ATTRIBUTE_CHARACTER.with(&[("name", name), ("character", &code_point(c))])
            })?;
        }
        if base == "Number" && !v.string_value.as_deref().is_some_and(is_sqs_number) {
            return Err(error::ATTRIBUTE_NOT_A_NUMBER.with(&[("name", name)]));
        }
    }
    Ok(())
}

/// Bytes the attributes count towards the message size (names, types and values).
pub fn attributes_size(attrs: &Attributes) -> usize {
    attrs
        .iter()
        .map(|(k, v)| {
            k.len() + v.data_type.len() + v.value_bytes().map(|b| b.len()).unwrap_or_default()
        })
        .sum()
}

/// The priority a `redrive.priority` attribute asks for.
pub fn priority(attrs: &Attributes) -> SqsResult<Option<Priority>> {
    let Some(v) = attrs.get(PRIORITY_ATTRIBUTE) else { return Ok(None) };
    match (v.data_type.as_str(), v.string_value.as_deref()) {
        ("String", Some("high")) => Ok(Some(Priority::High)),
        ("String", Some("standard")) => Ok(Some(Priority::Standard)),
        ("String", Some("low")) => Ok(Some(Priority::Low)),
        _ => Err(error::PRIORITY_ATTRIBUTE.err()),
    }
}

/// Stores message attributes into a job's string attributes.
pub fn store(attrs: &Attributes, out: &mut BTreeMap<String, String>) {
    for (name, v) in attrs {
        let text = if v.is_binary() {
            v.binary_value.clone().unwrap_or_default()
        } else {
            v.string_value.clone().unwrap_or_default()
        };
        out.insert(name.clone(), text);
        if v.data_type != "String" {
            out.insert(format!("{TYPE_PREFIX}{name}"), v.data_type.clone());
        }
    }
}

/// The message attributes of a job: every attribute not reserved (`:` in the key), typed as
/// stored, `String` for attributes set through the native API.
pub fn load(stored: &BTreeMap<String, String>) -> Attributes {
    stored
        .iter()
        .filter(|(k, _)| !k.contains(':'))
        .map(|(k, v)| {
            let data_type = stored
                .get(&format!("{TYPE_PREFIX}{k}"))
                .cloned()
                .unwrap_or_else(|| "String".to_owned());
            let binary = data_type.starts_with("Binary");
            let value = AttributeValue {
                data_type,
                string_value: (!binary).then(|| v.clone()),
                binary_value: binary.then(|| v.clone()),
            };
            (k.clone(), value)
        })
        .collect()
}

/// Keeps the attributes a receive asked for: `All`, `.*`, exact names, or `prefix.*`.
pub fn select(attrs: Attributes, names: &[String]) -> Attributes {
    if names.iter().any(|n| n == "All" || n == ".*") {
        return attrs;
    }
    attrs
        .into_iter()
        .filter(|(k, _)| {
            names.iter().any(|n| match n.strip_suffix(".*") {
                Some(prefix) => k.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')),
                None => n == k,
            })
        })
        .collect()
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

/// `MD5OfMessageAttributes` as SQS computes it: over the attributes sorted by name, each as
/// length-prefixed name, length-prefixed type, a transport byte (1 string, 2 binary) and the
/// length-prefixed value; lengths are 4-byte big-endian.
pub fn md5_of_attributes(attrs: &Attributes) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    fn put(h: &mut Md5, b: &[u8]) {
        h.update((b.len() as u32).to_be_bytes());
        h.update(b);
    }
    let mut h = Md5::new();
    for (name, v) in attrs {
        put(&mut h, name.as_bytes());
        put(&mut h, v.data_type.as_bytes());
        h.update([if v.is_binary() { 2 } else { 1 }]);
        put(&mut h, &v.value_bytes().unwrap_or_default());
    }
    Some(hex(&h.finalize()))
}

/// The first character outside what SQS (and XML) allows in bodies and attribute values.
fn check_characters(s: &str) -> Result<(), char> {
    let legal = |c: char| matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}');
    s.chars().find(|c| !legal(*c)).map_or(Ok(()), Err)
}

/// Characters a data type has at most (SQS: 256, the same as a name).
const DATA_TYPE_LENGTH_MAX: usize = limits::SQS_ATTRIBUTE_NAME_LENGTH_MAX;

/// The base type of a data type as SQS takes it: `String`, `Number` or `Binary` (case
/// matters), optionally followed by `.` and a non-empty custom label (`Number.float`), at most
/// `DATA_TYPE_LENGTH_MAX` characters, in the characters a body may hold.
fn data_type_base(data_type: &str) -> Option<&str> {
    let (base, label) = match data_type.split_once('.') {
        Some((base, label)) => (base, Some(label)),
        None => (data_type, None),
    };
    let ok = matches!(base, "String" | "Number" | "Binary")
        && label.is_none_or(|l| !l.is_empty())
        && data_type.chars().count() <= DATA_TYPE_LENGTH_MAX
        && check_characters(data_type).is_ok();
    ok.then_some(base)
}

/// Significant digits a number may have (SQS: 38).
const NUMBER_PRECISION_DIGITS_MAX: usize = 38;
/// SQS numbers' magnitudes run from 10^-128 to 10^+126, both included (or are zero).
const NUMBER_EXPONENT_MIN: i64 = -128;
const NUMBER_EXPONENT_MAX: i64 = 126;

/// A number as SQS takes it, checked exactly in decimal (a float would round `1e-400` to zero
/// and `1.0…01e126` to `1e126`): an optional sign, digits with an optional decimal point (at
/// least one digit), an optional exponent `e`/`E` with an optional sign; at most 38
/// significant digits (leading and trailing zeros do not count, as SQS trims them), and zero
/// or a magnitude from 10^-128 to 10^+126.
fn is_sqs_number(s: &str) -> bool {
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa = mantissa.strip_prefix(['+', '-']).unwrap_or(mantissa);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
        return false;
    }
    let exponent = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !all_digits(digits) {
                return false;
            }
            // Past ±10^9 the number is out of range whatever its digits (or is zero), so the
            // exponent saturates there instead of overflowing.
            let magnitude =
                digits.bytes().fold(0i64, |n, d| (n * 10 + i64::from(d - b'0')).min(1_000_000_000));
            if e.starts_with('-') {
                -magnitude
            } else {
                magnitude
            }
        }
    };
    let digits = || int.bytes().chain(frac.bytes());
    let Some(first) = digits().position(|d| d != b'0') else { return true };
    let last = int.len() + frac.len()
        - 1
        - digits().rev().position(|d| d != b'0').expect("a non-zero digit");
    let precision = last - first + 1;
    // The leading digit's power of ten: the number is in [10^lead, 10^(lead+1)).
    let lead = int.len() as i64 - 1 - first as i64 + exponent;
    let exactly_a_power_of_ten = precision == 1 && digits().nth(first) == Some(b'1');
    precision <= NUMBER_PRECISION_DIGITS_MAX
        && lead >= NUMBER_EXPONENT_MIN
        && (lead < NUMBER_EXPONENT_MAX || (lead == NUMBER_EXPONENT_MAX && exactly_a_power_of_ten))
}

/// Checks a body: 1 character at least, and only characters XML allows (`#x9 | #xA | #xD |
/// #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`).
pub fn check_body(body: &str) -> SqsResult<()> {
    if body.is_empty() {
        return Err(error::EMPTY_BODY.err());
    }
    if let Err(c) = check_characters(body) {
        return Err(error::INVALID_CHARACTERS.with(&[("character", &code_point(c))]));
    }
    Ok(())
}

/// A character as Unicode names it: `U+0001`.
fn code_point(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(v: &str) -> AttributeValue {
        AttributeValue {
            data_type: "String".into(),
            string_value: Some(v.into()),
            binary_value: None,
        }
    }

    #[test]
    fn body_digest_is_plain_md5() {
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn attribute_digest_matches_the_published_algorithm() {
        // Built by hand from the algorithm: name, type, transport byte, value.
        let mut attrs = Attributes::new();
        attrs.insert(
            "b".into(),
            AttributeValue {
                data_type: "Binary".into(),
                string_value: None,
                binary_value: Some(B64.encode([1u8, 2, 3])),
            },
        );
        attrs.insert("a".into(), string("x"));
        let mut raw = Vec::new();
        for (name, ty, transport, value) in
            [("a", "String", 1u8, &b"x"[..]), ("b", "Binary", 2u8, &[1u8, 2, 3][..])]
        {
            for part in [name.as_bytes(), ty.as_bytes()] {
                raw.extend((part.len() as u32).to_be_bytes());
                raw.extend(part);
            }
            raw.push(transport);
            raw.extend((value.len() as u32).to_be_bytes());
            raw.extend(value);
        }
        assert_eq!(md5_of_attributes(&attrs), Some(md5_hex(&raw)));
        assert_eq!(md5_of_attributes(&Attributes::new()), None);
    }

    #[test]
    fn typed_attributes_survive_storage() {
        let mut attrs = Attributes::new();
        attrs.insert(
            "n".into(),
            AttributeValue {
                data_type: "Number.int".into(),
                string_value: Some("42".into()),
                binary_value: None,
            },
        );
        attrs.insert("s".into(), string("v"));
        let mut stored = BTreeMap::new();
        store(&attrs, &mut stored);
        stored.insert(DEDUP_KEY.into(), "d".into());
        assert_eq!(stored["s"], "v", "plain strings are stored as is");
        assert_eq!(load(&stored), attrs);
        let picked = select(load(&stored), &["n.*".into(), "s".into()]);
        assert_eq!(picked.keys().collect::<Vec<_>>(), ["s"], "n.* means names under n.");
    }

    #[test]
    fn numbers_and_characters_follow_sqs_rules() {
        for ok in [
            "42",
            "-1.5",
            "1e10",
            "0",
            "1e126",
            "1e-128",
            "0e-400",
            "12345678901234567890123456789012345678",
            "1234567890123456789012345678901234567800000",
        ] {
            assert!(is_sqs_number(ok), "{ok}");
        }
        for bad in [
            "NaN",
            "inf",
            "1e200",
            "1e-200",
            "1e-400",
            "1.0000000000000000000000000000000000001e126",
            "0x10",
            "123456789012345678901234567890123456789",
        ] {
            assert!(!is_sqs_number(bad), "{bad}");
        }
        let mut attrs = Attributes::new();
        attrs.insert("s".into(), string("a\u{1}b"));
        assert_eq!(check_attributes(&attrs).unwrap_err().row, &error::ATTRIBUTE_CHARACTER);
    }

    #[test]
    fn bodies_outside_xml_characters_are_refused() {
        assert!(check_body("ok \t\n").is_ok());
        assert_eq!(check_body("a\u{1}b").unwrap_err().row, &error::INVALID_CHARACTERS);
        assert!(check_body("").is_err());
    }
}
