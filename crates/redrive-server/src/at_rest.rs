//! Encryption at rest: [`Sealed`] wraps any [`Broker`] and seals job bodies, attribute values
//! and attempt error texts (message and detail) with AES-256-GCM before they reach the store,
//! and opens every one it hands back, so the log or the database holds no job content.
//!
//! A sealed value is text, `rdenc1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`
//! ([`redrive_core::sealed`]), with a random 96-bit nonce per value and the header as
//! associated data. The [`Keyring`]'s first key seals; every key opens, found by its id (the
//! first 8 hex digits of the key's SHA-256), which is what makes rotation possible. Text not in
//! that form passes through unchanged: a store written before encryption was on stays readable.
//!
//! Left in clear, because the stores act on them: queue names, ids, idempotency keys, groups,
//! traceparents, error types (dead-letter filters and triage grouping match them), timestamps.
//! Failure signatures are computed from messages, which the store can no longer read, so
//! signature filters are applied here, after opening.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use redrive_core::broker::*;
use redrive_core::metrics::StoreSnapshot;
use redrive_core::model::{signature, Attempt, ErrorInfo, JobId};
use redrive_core::sealed::{self, SEALED_NONCE_BYTES, SEALED_PREFIX};
use redrive_core::{limits, Broker, Error, QueuePatch, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// Bytes of an AES-256 key.
pub const KEY_BYTES: usize = 32;

/// The keys of a server: the first seals, all open.
pub struct Keyring {
    keys: Vec<(String, LessSafeKey)>,
    random: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

/// The id a sealed value names its key by: the first 4 bytes of the key's SHA-256, in hex.
pub fn key_id(key: &[u8; KEY_BYTES]) -> String {
    redrive_core::model::hex(&Sha256::digest(key)[..4])
}

impl Keyring {
    /// A keyring of `keys`, the first of which seals. `None` when there are none.
    pub fn new(keys: &[[u8; KEY_BYTES]]) -> Option<Keyring> {
        let keys: Vec<(String, LessSafeKey)> = keys
            .iter()
            .map(|k| {
                let key = UnboundKey::new(&AES_256_GCM, k).expect("AES-256 takes 32 bytes");
                (key_id(k), LessSafeKey::new(key))
            })
            .collect();
        (!keys.is_empty()).then(|| Keyring { keys, random: SystemRandom::new() })
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Seals `plain` under the first key.
    pub fn seal(&self, plain: &str) -> Result<String> {
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; SEALED_NONCE_BYTES];
        self.random
            .fill(&mut nonce)
            .map_err(|_| Error::Internal("the OS random source failed".into()))?;
        let header = format!("{SEALED_PREFIX}{id}:");
        let mut buf = Vec::with_capacity(SEALED_NONCE_BYTES + plain.len() + 16);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plain.as_bytes());
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header.as_bytes()),
                &mut buf[SEALED_NONCE_BYTES..],
            )
            .map_err(|_| Error::Internal("sealing a value failed".into()))?;
        buf.extend_from_slice(tag.as_ref());
        let mut out = header;
        STANDARD.encode_string(&buf, &mut out);
        debug_assert_eq!(out.len(), sealed::sealed_len(plain.len()));
        Ok(out)
    }

    /// Opens a sealed value; any other text is returned as it is. An unknown key id or a value
    /// that does not authenticate is an error naming the key id (a store sealed with a key this
    /// server was not given, or damaged data).
    pub fn open(&self, text: String) -> Result<String> {
        let Some((id, b64)) = sealed::split(&text) else { return Ok(text) };
        let Some((_, key)) = self.keys.iter().find(|(k, _)| k == id) else {
            return Err(Error::StoreUnavailable(format!(
                "job data is sealed with encryption key {id}, which none of the key files \
                 given to this server holds"
            )));
        };
        let damaged = || Error::Internal(format!("a value sealed with key {id} does not decrypt"));
        let mut buf = STANDARD.decode(b64).map_err(|_| damaged())?;
        if buf.len() < SEALED_NONCE_BYTES + 16 {
            return Err(damaged());
        }
        let nonce: [u8; SEALED_NONCE_BYTES] =
            buf[..SEALED_NONCE_BYTES].try_into().expect("length checked");
        let header = &text[..text.len() - b64.len()];
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header.as_bytes()),
                &mut buf[SEALED_NONCE_BYTES..],
            )
            .map_err(|_| damaged())?;
        String::from_utf8(plain.to_vec()).map_err(|_| damaged())
    }

    /// The value sealed under the current key, or `None` when it already is (or is plaintext,
    /// which rekeying leaves alone). For `redrive rekey`.
    pub fn reseal(&self, text: &str) -> Result<Option<String>> {
        match sealed::split(text) {
            Some((id, _)) if id != self.current_id() => {
                let plain = self.open(text.to_owned())?;
                self.seal(&plain).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Seals an error's message and detail, cut first so that their sealed forms fit the
    /// attempt log's bounds (the store would otherwise cut the ciphertext).
    pub fn seal_error(&self, e: ErrorInfo) -> Result<ErrorInfo> {
        let mut e = e.truncated();
        cut(&mut e.message, sealed::plain_budget(limits::ERROR_MESSAGE_BYTES_MAX));
        let message = self.seal(&e.message)?;
        let detail = match e.detail {
            Some(mut d) => {
                let room = limits::ATTEMPT_ERROR_BYTES_MAX - e.kind.len() - message.len();
                cut(&mut d, sealed::plain_budget(room));
                Some(self.seal(&d)?)
            }
            None => None,
        };
        Ok(ErrorInfo { kind: e.kind, message, detail })
    }

    pub fn open_error(&self, e: ErrorInfo) -> Result<ErrorInfo> {
        let detail = e.detail.map(|d| self.open(d)).transpose()?;
        Ok(ErrorInfo { kind: e.kind, message: self.open(e.message)?, detail })
    }

    fn open_attempts(&self, attempts: Vec<Attempt>) -> Result<Vec<Attempt>> {
        attempts
            .into_iter()
            .map(|mut a| {
                a.error = a.error.map(|e| self.open_error(e)).transpose()?;
                Ok(a)
            })
            .collect()
    }

    fn open_attributes(
        &self,
        attrs: std::collections::BTreeMap<String, String>,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        attrs.into_iter().map(|(k, v)| Ok((k, self.open(v)?))).collect()
    }

    /// A job as the store holds it, opened.
    pub fn open_job(&self, mut j: JobInfo) -> Result<JobInfo> {
        j.body = j.body.map(|b| self.open(b)).transpose()?;
        j.attributes = self.open_attributes(j.attributes)?;
        j.attempts = self.open_attempts(j.attempts)?;
        Ok(j)
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

/// A [`Broker`] whose job content is sealed at rest in the broker it wraps.
pub struct Sealed<B> {
    inner: B,
    keys: Arc<Keyring>,
}

impl<B: Broker> Sealed<B> {
    pub fn new(inner: B, keys: Arc<Keyring>) -> Sealed<B> {
        Sealed { inner, keys }
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn open_deliveries(&self, mut jobs: Vec<Delivery>) -> Result<Vec<Delivery>> {
        for d in &mut jobs {
            d.body = self.keys.open(std::mem::take(&mut d.body))?;
            d.attributes = self.keys.open_attributes(std::mem::take(&mut d.attributes))?;
        }
        Ok(jobs)
    }

    fn open_page(&self, page: JobPage) -> Result<JobPage> {
        let jobs = page.jobs.into_iter().map(|j| self.keys.open_job(j));
        Ok(JobPage { jobs: jobs.collect::<Result<_>>()?, next: page.next })
    }

    /// One page of dead jobs matching `filter`, signature included: the store filters by
    /// everything else, and the signature (made from the message) is matched here after
    /// opening, going on through the store's pages until `limit` match or none are left.
    async fn list_dead_open(
        &self,
        queue: String,
        mut filter: DeadFilter,
        mut after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage> {
        let Some(sig) = filter.signature.take() else {
            return self.open_page(self.inner.list_dead(queue, filter, after, limit).await?);
        };
        let limit = limit.clamp(1, limits::DEAD_PAGE_COUNT_MAX);
        let mut jobs = Vec::new();
        loop {
            let page = self.inner.list_dead(queue.clone(), filter.clone(), after, limit).await?;
            for j in page.jobs {
                let id = j.id;
                let j = self.keys.open_job(j)?;
                let last = j.attempts.iter().rev().find_map(|a| a.error.as_ref());
                if last.is_some_and(|e| signature(&e.kind, &e.message) == sig) {
                    jobs.push(j);
                }
                after = Some(id);
                if jobs.len() == limit {
                    // There may be more: the caller asks again from here.
                    return Ok(JobPage { jobs, next: after });
                }
            }
            if page.next.is_none() {
                return Ok(JobPage { jobs, next: None });
            }
        }
    }
}

impl<B: Broker> Broker for Sealed<B> {
    async fn put_queue(&self, name: String, patch: QueuePatch) -> Result<(QueueInfo, bool)> {
        self.inner.put_queue(name, patch).await
    }
    async fn get_queue(&self, name: String) -> Result<QueueInfo> {
        self.inner.get_queue(name).await
    }
    async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        self.inner.list_queues().await
    }
    async fn delete_queue(&self, name: String) -> Result<()> {
        self.inner.delete_queue(name).await
    }
    async fn enqueue(&self, queue: String, mut jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        // The stores measure a sealed value by its plaintext (redrive_core::sealed::plain_len),
        // so the size limits they check are the user's own.
        for job in &mut jobs {
            job.body = self.keys.seal(&job.body)?;
            for v in job.attributes.values_mut() {
                *v = self.keys.seal(v)?;
            }
        }
        self.inner.enqueue(queue, jobs).await
    }
    async fn receive(&self, req: ReceiveRequest) -> Result<Vec<Delivery>> {
        self.open_deliveries(self.inner.receive(req).await?)
    }
    async fn ack(&self, receipts: Vec<String>) -> Result<Vec<AckResult>> {
        self.inner.ack(receipts).await
    }
    async fn ack_receive(
        &self,
        receipts: Vec<String>,
        req: ReceiveRequest,
    ) -> Result<(Vec<AckResult>, Vec<Delivery>)> {
        let (acked, jobs) = self.inner.ack_receive(receipts, req).await?;
        Ok((acked, self.open_deliveries(jobs)?))
    }
    async fn fail(&self, mut req: FailRequest) -> Result<FailResult> {
        req.error = self.keys.seal_error(req.error)?;
        self.inner.fail(req).await
    }
    async fn extend(&self, receipt: String, lease_ms: u64) -> Result<u64> {
        self.inner.extend(receipt, lease_ms).await
    }
    async fn get_job(&self, id: JobId) -> Result<JobInfo> {
        self.keys.open_job(self.inner.get_job(id).await?)
    }
    async fn list_dead(
        &self,
        queue: String,
        filter: DeadFilter,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage> {
        self.list_dead_open(queue, filter, after, limit).await
    }
    async fn list_jobs(
        &self,
        queue: String,
        filter: JobFilter,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage> {
        self.open_page(self.inner.list_jobs(queue, filter, after, limit).await?)
    }
    async fn redrive(&self, queue: String, mut req: RedriveRequest) -> Result<RedriveResult> {
        req.check()?;
        let with_signature = req.filter.as_ref().is_some_and(|f| f.signature.is_some());
        if with_signature {
            // The store cannot read messages: pick the jobs here, as the store would (the first
            // REDRIVE_COUNT_MAX that match), and redrive them by id.
            let filter = req.filter.take().expect("checked");
            let mut ids = Vec::new();
            let mut after = None;
            while ids.len() < limits::REDRIVE_COUNT_MAX {
                let page = self
                    .list_dead_open(
                        queue.clone(),
                        filter.clone(),
                        after,
                        limits::DEAD_PAGE_COUNT_MAX,
                    )
                    .await?;
                ids.extend(page.jobs.iter().map(|j| j.id));
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            ids.truncate(limits::REDRIVE_COUNT_MAX);
            req.ids = Some(ids);
        }
        self.inner.redrive(queue, req).await
    }
    async fn purge(&self, queue: String) -> Result<u64> {
        self.inner.purge(queue).await
    }
    async fn delete_job(&self, id: JobId) -> Result<()> {
        self.inner.delete_job(id).await
    }
    async fn put_doc(&self, kind: DocKind, key: String, value: Option<String>) -> Result<()> {
        self.inner.put_doc(kind, key, value).await
    }
    async fn put_doc_if(
        &self,
        kind: DocKind,
        key: String,
        expected: Option<String>,
        value: Option<String>,
    ) -> Result<bool> {
        self.inner.put_doc_if(kind, key, expected, value).await
    }
    async fn get_doc(&self, kind: DocKind, key: String) -> Result<Option<String>> {
        self.inner.get_doc(kind, key).await
    }
    async fn list_docs(&self, kind: DocKind) -> Result<Vec<(String, String)>> {
        self.inner.list_docs(kind).await
    }
    async fn snapshot(&self) -> Result<StoreSnapshot> {
        self.inner.snapshot().await
    }
    async fn drain(&self) -> Result<()> {
        self.inner.drain().await
    }
    fn health(&self) -> Health {
        self.inner.health()
    }
    async fn ready(&self) -> Result<()> {
        self.inner.ready().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[[u8; 32]]) -> Keyring {
        Keyring::new(keys).unwrap()
    }

    #[test]
    fn a_value_sealed_opens_to_itself_and_shows_nothing() {
        let k = ring(&[[7; 32]]);
        let s = k.seal("CUSTOMER-SECRET-7731 é").unwrap();
        assert!(s.starts_with(&format!("rdenc1:{}:", k.current_id())));
        assert!(!s.contains("SECRET"));
        assert_eq!(sealed::plain_len(&s), "CUSTOMER-SECRET-7731 é".len());
        assert_ne!(s, k.seal("CUSTOMER-SECRET-7731 é").unwrap(), "a fresh nonce each time");
        assert_eq!(k.open(s).unwrap(), "CUSTOMER-SECRET-7731 é");
        assert_eq!(k.open("plain text".into()).unwrap(), "plain text");
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let (a, b) = ([1; 32], [2; 32]);
        let old = ring(&[a]).seal("x").unwrap();
        let both = ring(&[b, a]);
        assert_eq!(both.open(old.clone()).unwrap(), "x");
        let new = both.seal("y").unwrap();
        assert!(new.contains(&key_id(&b)));
        let resealed = both.reseal(&old).unwrap().expect("old key");
        assert_eq!(ring(&[b]).open(resealed).unwrap(), "x");
        assert_eq!(both.reseal(&new).unwrap(), None);
        let err = ring(&[b]).open(old).unwrap_err().to_string();
        assert!(err.contains(&key_id(&a)), "{err}");
    }

    #[test]
    fn a_tampered_value_is_an_error_not_a_panic() {
        let k = ring(&[[3; 32]]);
        let mut s = k.seal("hello world").unwrap();
        let i = s.len() - 6;
        let c = if &s[i..i + 1] == "A" { "B" } else { "A" };
        s.replace_range(i..i + 1, c);
        assert!(k.open(s).is_err());
    }

    #[test]
    fn sealed_errors_fit_the_attempt_log() {
        let k = ring(&[[4; 32]]);
        let e = ErrorInfo {
            kind: "T".repeat(300),
            message: "m".repeat(5000),
            detail: Some("d".repeat(20_000)),
        };
        let s = k.seal_error(e).unwrap();
        let total = s.kind.len() + s.message.len() + s.detail.as_ref().unwrap().len();
        assert!(s.message.len() <= limits::ERROR_MESSAGE_BYTES_MAX);
        assert!(total <= limits::ATTEMPT_ERROR_BYTES_MAX);
        assert_eq!(s.clone().truncated(), s, "the store cuts nothing");
        let o = k.open_error(s).unwrap();
        assert!(o.message.chars().all(|c| c == 'm'));
    }
}
