//! Redaction before anything leaves for a model: configured JSON pointers in the body, plus
//! built-in detectors for emails, card numbers (Luhn-checked), bearer tokens and API keys,
//! `secret=value` pairs, phone numbers and IBANs (mod-97-checked). The audit record keeps the
//! redacted text, never the original.

use serde_json::Value;

use crate::model::{DeadCase, FailedAttempt};

pub const EMAIL: &str = "[EMAIL]";
pub const CARD: &str = "[CARD]";
pub const SECRET: &str = "[SECRET]";
pub const PHONE: &str = "[PHONE]";
pub const IBAN: &str = "[IBAN]";
pub const FIELD: &str = "[REDACTED]";

/// Key prefixes of well-known credentials.
const KEY_PREFIXES: &[&str] = &[
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "pk_live_",
    "whsec_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxs-",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "glpat-",
    "akia",
    "asia",
    "sg.",
    "key-",
    "eyj",
];
/// `name=value` / `name: value` pairs whose value is a secret.
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "private_key",
    "client_secret",
    "authorization",
    "auth",
];

/// A job with its body (pointers first, then detectors), attributes and errors redacted.
pub fn redact_case(case: &DeadCase, pointers: &[String]) -> DeadCase {
    let body = match serde_json::from_str::<Value>(&case.body) {
        Ok(mut v) if !pointers.is_empty() => {
            for p in pointers {
                if let Some(x) = v.pointer_mut(p) {
                    *x = Value::String(FIELD.into());
                }
            }
            v.to_string()
        }
        _ => case.body.clone(),
    };
    DeadCase {
        queue: case.queue.clone(),
        body: redact_text(&body),
        attributes: case.attributes.iter().map(|(k, v)| (k.clone(), redact_text(v))).collect(),
        receive_count: case.receive_count,
        errors: case
            .errors
            .iter()
            .map(|e| FailedAttempt {
                kind: e.kind.clone(),
                message: redact_text(&e.message),
                detail: e.detail.as_deref().map(redact_text),
            })
            .collect(),
    }
}

/// Redacts every secret the detectors find in `s`.
pub fn redact_text(s: &str) -> String {
    words(&numbers(s))
}

/// Pass 1: runs of digits with spaces or dashes between them (cards and phones are often
/// written in groups), and IBANs written in groups of four.
fn numbers(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_iban = i + 4 <= chars.len()
            && chars[i].is_ascii_uppercase()
            && chars[i + 1].is_ascii_uppercase()
            && chars[i + 2].is_ascii_digit()
            && chars[i + 3].is_ascii_digit()
            && (i == 0 || !chars[i - 1].is_ascii_alphanumeric());
        if starts_iban {
            if let Some(end) = iban_at(&chars, i) {
                out.push_str(IBAN);
                i = end;
                continue;
            }
        }
        let starts_number =
            chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric());
        if starts_number {
            let (end, digits) = span(&chars, i, |c| c.is_ascii_digit());
            let plus = i > 0 && chars[i - 1] == '+';
            let grouped = chars[i..end].iter().any(|c| *c == ' ' || *c == '-');
            if (13..=19).contains(&digits.len()) && luhn(&digits) {
                out.push_str(CARD);
                i = end;
                continue;
            }
            if (plus && (8..=15).contains(&digits.len()))
                || (grouped && (10..=11).contains(&digits.len()))
            {
                if plus {
                    out.pop();
                }
                out.push_str(PHONE);
                i = end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// From `start`, the longest run of `keep` characters with single spaces or dashes between
/// groups; returns where it ends and the kept characters.
fn span(chars: &[char], start: usize, keep: impl Fn(char) -> bool) -> (usize, String) {
    let mut end = start;
    let mut kept = String::new();
    let mut i = start;
    while i < chars.len() {
        if keep(chars[i]) {
            kept.push(chars[i]);
            i += 1;
            end = i;
        } else if (chars[i] == ' ' || chars[i] == '-') && i + 1 < chars.len() && keep(chars[i + 1])
        {
            i += 1;
        } else {
            break;
        }
    }
    (end, kept)
}

/// The end of a valid IBAN starting at `start`, written compact or in space-separated groups:
/// the longest run of groups that checks out.
fn iban_at(chars: &[char], start: usize) -> Option<usize> {
    let is_part = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
    let mut groups = Vec::new(); // (end, compact so far)
    let mut compact = String::new();
    let mut i = start;
    loop {
        let from = i;
        while i < chars.len() && is_part(chars[i]) {
            compact.push(chars[i]);
            i += 1;
        }
        if i == from || compact.len() > 34 {
            break;
        }
        groups.push((i, compact.clone()));
        if i + 1 < chars.len() && chars[i] == ' ' && is_part(chars[i + 1]) {
            i += 1;
        } else {
            break;
        }
    }
    let followed_ok = |end: usize| end == chars.len() || !chars[end].is_ascii_alphanumeric();
    groups
        .into_iter()
        .rev()
        .find(|(end, c)| (15..=34).contains(&c.len()) && followed_ok(*end) && iban_valid(c))
        .map(|(end, _)| end)
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn iban_valid(iban: &str) -> bool {
    let (head, tail) = iban.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || "\"'`,;<>()[]{}|".contains(c)
}

/// Pass 2: word by word — emails, key prefixes, `Bearer <token>`, `name=value` secrets.
fn words(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let mut redact_next = false;
    let flush = |word: &mut String, out: &mut String, redact_next: &mut bool| {
        if word.is_empty() {
            return;
        }
        if std::mem::take(redact_next) {
            out.push_str(SECRET);
        } else {
            out.push_str(&redact_word(word));
            let lower = word.to_lowercase();
            *redact_next = lower == "bearer"
                || lower == "basic"
                || SECRET_NAMES
                    .iter()
                    .any(|n| lower == format!("{n}:") || lower == format!("{n}="));
        }
        word.clear();
    };
    for c in s.chars() {
        if is_delimiter(c) {
            flush(&mut word, &mut out, &mut redact_next);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out, &mut redact_next);
    out
}

fn redact_word(w: &str) -> String {
    let lower = w.to_lowercase();
    for sep in ['=', ':'] {
        if let Some((name, value)) = w.split_once(sep) {
            let name_l = name.to_lowercase();
            if !value.is_empty() && SECRET_NAMES.iter().any(|n| name_l.ends_with(n)) {
                return format!("{name}{sep}{SECRET}");
            }
        }
    }
    if let Some((local, domain)) = w.split_once('@') {
        let domain = domain.trim_end_matches(['.', ':']);
        if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') {
            let prefix: String = local.chars().take_while(|c| !c.is_alphanumeric()).collect();
            return format!("{prefix}{EMAIL}");
        }
    }
    let looks_like_key = w.len() >= 16
        && KEY_PREFIXES.iter().any(|p| lower.starts_with(p))
        && w.chars().any(|c| c.is_ascii_digit());
    if looks_like_key {
        return SECRET.to_owned();
    }
    w.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detectors_find_the_usual_secrets() {
        let cases = [
            ("mail jane.doe+x@example.co.uk now", "mail [EMAIL] now"),
            ("card 4242 4242 4242 4242 declined", "card [CARD] declined"),
            ("card 4242-4242-4242-4241 ok", "card 4242-4242-4242-4241 ok"),
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def",
                "Authorization: [SECRET] [SECRET]",
            ),
            (
                "Invalid API Key provided: sk_live_51Hx9aQ2eZvKYlo2C",
                "Invalid API Key provided: [SECRET]",
            ),
            ("db url password=hunter2 host=db", "db url password=[SECRET] host=db"),
            ("call +44 20 7946 0958 or 555-123-4567", "call [PHONE] or [PHONE]"),
            ("iban DE89 3704 0044 0532 0130 00 ok", "iban [IBAN] ok"),
            ("iban GB82WEST12345698765432.", "iban [IBAN]."),
            ("order 12345 at 2025-11-22 for 3 items", "order 12345 at 2025-11-22 for 3 items"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_text(input), want, "{input}");
        }
    }

    #[test]
    fn pointers_and_detectors_cover_body_errors_and_attributes() {
        let case = DeadCase {
            queue: "payments".into(),
            body: r#"{"customer":{"name":"Jane Doe","email":"jane@x.io"},"card":"4000056655665556","amount":10}"#.into(),
            attributes: [("reply_to".to_owned(), "ops@x.io".to_owned())].into(),
            receive_count: 1,
            errors: vec![FailedAttempt {
                kind: "CardError".into(),
                message: "card 4000056655665556 of jane@x.io declined".into(),
                detail: Some("POST /v1/charges Authorization: Bearer sk_test_4eC39HqLyjWDarjtT1zdp7dc".into()),
            }],
        };
        let r = redact_case(&case, &["/customer/name".to_owned()]);
        let all = serde_json::to_string(&r).unwrap();
        for secret in ["Jane Doe", "jane@x.io", "4000056655665556", "ops@x.io", "sk_test_4eC39"] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
        assert!(r.body.contains("\"amount\":10"), "the rest is kept: {}", r.body);
    }
}
