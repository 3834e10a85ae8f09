//! The text form of a value encrypted at rest (`rdenc1:<key id>:<base64>`) as far as the stores
//! need to know it: how to recognise one and how large its plaintext is. The cryptography lives
//! in the server (`redrive_server::at_rest`); the stores never hold a key.
//!
//! Why the stores care at all: size limits (`max_message_bytes`, attribute values) are the
//! user's and apply to the plaintext, so a store measures a sealed value by what it decrypts to
//! ([`plain_len`]) and the record bounds in [`crate::limits`] allow for the expansion
//! ([`sealed_len`]).

/// Marks a sealed value; the version digit changes if the format ever does.
pub const SEALED_PREFIX: &str = "rdenc1:";
/// Hex digits of the key id (the first 4 bytes of the key's SHA-256).
pub const SEALED_KEY_ID_LEN: usize = 8;
/// AES-GCM nonce and tag around the ciphertext.
pub const SEALED_NONCE_BYTES: usize = 12;
pub const SEALED_TAG_BYTES: usize = 16;
/// `rdenc1:` + key id + `:`.
const HEADER_LEN: usize = SEALED_PREFIX.len() + SEALED_KEY_ID_LEN + 1;
const OVERHEAD_BYTES: usize = SEALED_NONCE_BYTES + SEALED_TAG_BYTES;

/// The length of the sealed form of `plain` bytes (padded base64 of nonce, ciphertext, tag).
pub const fn sealed_len(plain: usize) -> usize {
    HEADER_LEN + (plain + OVERHEAD_BYTES).div_ceil(3) * 4
}

/// The most plaintext bytes whose sealed form fits in `sealed_max` bytes.
pub const fn plain_budget(sealed_max: usize) -> usize {
    if sealed_max < HEADER_LEN + 4 {
        return 0;
    }
    ((sealed_max - HEADER_LEN) / 4 * 3).saturating_sub(OVERHEAD_BYTES)
}

/// The parts of a sealed value, `(key id, base64)`, or `None` for any other text (which is
/// then plaintext: stores written before encryption was on stay readable).
pub fn split(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(SEALED_PREFIX)?;
    let (id, b64) = rest.split_at_checked(SEALED_KEY_ID_LEN)?;
    let b64 = b64.strip_prefix(':')?;
    let id_ok = id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let b64_ok = b64.len() >= sealed_len(0) - HEADER_LEN
        && b64.len() % 4 == 0
        && b64.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    (id_ok && b64_ok).then_some((id, b64))
}

/// The size a limit measures: the plaintext's for a sealed value, the text's otherwise.
pub fn plain_len(text: &str) -> usize {
    match split(text) {
        Some((_, b64)) => {
            let pad = b64.bytes().rev().take_while(|&b| b == b'=').count();
            (b64.len() / 4 * 3).saturating_sub(pad).saturating_sub(OVERHEAD_BYTES)
        }
        None => text.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(plain: usize) -> String {
        let raw = plain + OVERHEAD_BYTES;
        let mut b64 = "A".repeat(raw.div_ceil(3) * 4);
        let pad = (3 - raw % 3) % 3;
        b64.replace_range(b64.len() - pad.., &"=".repeat(pad));
        format!("{SEALED_PREFIX}0123abcd:{b64}")
    }

    #[test]
    fn the_plaintext_size_of_a_sealed_value_is_exact() {
        for n in [0, 1, 2, 3, 4, 100, 1024 * 1024] {
            let s = fake(n);
            assert_eq!(s.len(), sealed_len(n));
            assert_eq!(plain_len(&s), n, "{n}");
            assert!(sealed_len(plain_budget(s.len())) <= s.len());
            assert!(plain_budget(s.len()) + 3 > n, "the budget is tight");
        }
    }

    #[test]
    fn other_text_is_measured_as_it_is() {
        for t in ["hello", "rdenc1:", "rdenc1:XYZ12345:AAAA", "rdenc1:0123abcd:AA!A", ""] {
            assert_eq!(plain_len(t), t.len());
            assert!(split(t).is_none());
        }
    }
}
