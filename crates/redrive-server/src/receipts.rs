//! Receipts handed to clients are signed, so that knowing a job id is not enough to settle
//! another worker's lease.
//!
//! A store's receipt names the job and its lease epoch; anyone who saw a job id (in a status
//! page, a log, a dead-letter listing) could write one. The server hands out
//! `{store receipt}.{tag}.{queue}` instead, where the tag is an HMAC-SHA256 (truncated to
//! 128 bits) over the store receipt and the queue name with a key every server of the store
//! shares: it is a [`DocKind::Secret`] document, made by the first server that needs it (a
//! compare-and-set, so racing servers agree on one). A receipt whose tag does not verify never
//! reaches the store (`invalid_receipt`, SQS `ReceiptHandleIsInvalid`); the queue
//! in a verified receipt is where its job was leased, for scope checks on routes that take
//! receipts alone (`/v1/ack`, …). Receipts stay valid across restarts (the key is in the store).

use hmac::{Hmac, Mac};
use rand::TryRngCore;
use redrive_core::broker::DocKind;
use redrive_core::{Broker, Error, Result};
use sha2::Sha256;

/// The secret's document key.
const SECRET_NAME: &str = "receipts";
/// Tag bytes kept (of HMAC-SHA256's 32): 128 bits cannot be guessed.
const TAG_BYTES: usize = 16;

pub struct ReceiptKey {
    /// The MAC with the key already absorbed: each tag clones it rather than hashing the key's
    /// two padded blocks again (half of a tag's compressions).
    keyed: Hmac<Sha256>,
}

/// A receipt whose tag verified.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// What the store issued.
    pub inner: &'a str,
    pub queue: &'a str,
}

impl ReceiptKey {
    /// The store's key, made now if no server made it before.
    pub async fn load<B: Broker>(broker: &B) -> Result<ReceiptKey> {
        loop {
            if let Some(hex) = broker.get_doc(DocKind::Secret, SECRET_NAME.into()).await? {
                return ReceiptKey::from_hex(&hex)
                    .ok_or_else(|| Error::Internal("the stored receipt key is malformed".into()));
            }
            let mut key = [0u8; 32];
            rand::rngs::OsRng
                .try_fill_bytes(&mut key)
                .map_err(|e| Error::Internal(format!("no randomness for the receipt key: {e}")))?;
            let hex = to_hex(&key);
            // Lost to another server: read the winner's on the next turn.
            if broker.put_doc_if(DocKind::Secret, SECRET_NAME.into(), None, Some(hex)).await? {
                return Ok(ReceiptKey::new(key));
            }
        }
    }

    fn from_hex(s: &str) -> Option<ReceiptKey> {
        let mut key = [0u8; 32];
        if s.len() != 64 {
            return None;
        }
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ReceiptKey::new(key))
    }

    fn new(key: [u8; 32]) -> ReceiptKey {
        ReceiptKey { keyed: Hmac::<Sha256>::new_from_slice(&key).expect("any key length") }
    }

    fn tag(&self, inner: &str, queue: &str) -> [u8; TAG_BYTES] {
        let mut mac = self.keyed.clone();
        mac.update(inner.as_bytes());
        mac.update(&[0]);
        mac.update(queue.as_bytes());
        let full = mac.finalize().into_bytes();
        full[..TAG_BYTES].try_into().expect("32 bytes")
    }

    /// The receipt a client gets for a lease of `queue`'s job.
    pub fn seal(&self, queue: &str, inner: &str) -> String {
        debug_assert!(!inner.contains('.'), "a store receipt has no dots");
        format!("{inner}.{}.{queue}", to_hex(&self.tag(inner, queue)))
    }

    /// The store receipt and queue of a receipt this store's servers issued, or `None`.
    pub fn open<'a>(&self, sealed: &'a str) -> Option<Opened<'a>> {
        let (inner, rest) = sealed.split_once('.')?;
        let (tag, queue) = rest.split_once('.')?;
        let expected = to_hex(&self.tag(inner, queue));
        // Constant time: a mismatch must not say how many leading characters were right.
        let same = tag.len() == expected.len()
            && tag.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        same.then_some(Opened { inner, queue })
    }

    /// What to hand the store for a client's receipt: the store receipt if the tag verifies;
    /// `unknown_receipt` for one of our shape whose tag does not, `invalid_receipt` otherwise.
    pub fn unseal<'a>(&self, sealed: &'a str) -> Result<Opened<'a>> {
        match self.open(sealed) {
            Some(o) => Ok(o),
            None if well_formed(sealed) => Err(Error::UnknownReceipt),
            None => Err(Error::InvalidReceipt),
        }
    }
}

/// `{40 hex}.{32 hex}.{queue name}`.
fn well_formed(s: &str) -> bool {
    let hex = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_hexdigit());
    let mut parts = s.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(inner), Some(tag), Some(queue)) => {
            hex(inner, 40) && hex(tag, 32) && redrive_core::model::valid_queue_name(queue)
        }
        _ => false,
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [HEX[(b >> 4) as usize] as char, HEX[(b & 15) as usize] as char])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_receipt_opens_and_a_forged_or_moved_one_does_not() {
        let key = ReceiptKey::new([7; 32]);
        let inner = "0190b0e0c0a0908070605040302010000000002a";
        let sealed = key.seal("orders", inner);
        assert_eq!(key.open(&sealed), Some(Opened { inner, queue: "orders" }));
        assert_eq!(key.unseal(&sealed), Ok(Opened { inner, queue: "orders" }));
        // The bare store receipt, another queue's name, another epoch, another key: refused.
        assert_eq!(key.open(inner), None);
        assert_eq!(key.open(&sealed.replace(".orders", ".payments")), None);
        let other_epoch = sealed.replacen("2a.", "2b.", 1);
        assert_eq!(key.open(&other_epoch), None);
        assert_eq!(ReceiptKey::new([8; 32]).open(&sealed), None);
        assert_eq!(
            key.unseal(inner),
            Err(Error::InvalidReceipt),
            "a bare store receipt never passes"
        );
        // The tag is HMAC-SHA256 over "inner \0 queue", cut to 16 bytes: receipts issued before
        // a restart or by another version of the server still open.
        let mut mac = Hmac::<Sha256>::new_from_slice(&[7; 32]).unwrap();
        mac.update(format!("{inner}\0orders").as_bytes());
        let tag = to_hex(&mac.finalize().into_bytes()[..TAG_BYTES]);
        assert_eq!(sealed, format!("{inner}.{tag}.orders"));
        // FIFO queue names carry a dot; the queue is everything after the tag.
        let fifo = key.seal("jobs.fifo", inner);
        assert_eq!(key.open(&fifo).map(|o| o.queue), Some("jobs.fifo"));
    }

    #[test]
    fn the_key_round_trips_through_its_stored_text() {
        let key = ReceiptKey::new([0xab; 32]);
        let back = ReceiptKey::from_hex(&to_hex(&[0xab; 32])).expect("valid");
        assert_eq!(back.seal("q", "r"), key.seal("q", "r"));
        assert!(ReceiptKey::from_hex("zz").is_none());
    }
}
