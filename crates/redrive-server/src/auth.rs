//! Who may do what: API keys with scopes, stored in the store (an [`DocKind::ApiKey`] document
//! per key, so every server of a store sees a revocation on its next request), checked on every
//! route but `/healthz`, `/readyz` and `/v1/openapi.json` when the server runs with `--auth`.
//!
//! A key is an id and a secret; its token is `id.secret` (`Authorization: Bearer`), and on the
//! SQS door the id is the AWS access key id and the secret the secret access key (SigV4). The
//! store keeps the SHA-256 of the secret for bearer tokens and, because SigV4 is an HMAC that
//! can only be checked with the secret itself, the secret for SigV4 (docs/security.md says
//! what that means for who can read the store).
//!
//! A key's grants are `ACTION:QUEUE_GLOB` (`send:orders-*`, `read:*`). Actions:
//! `send`; `receive` (receive, ack, fail, extend); `read` (job status, stats, dead lists,
//! queue lists, `/metrics`); `manage` (create, update, delete, purge queues; redrive);
//! `triage` (decide proposals, set policies); `admin` (keys, audit; implies every other).
//!
//! Checks happen in two places: [`require`] (a middleware) authenticates every request and
//! authorizes the routes whose queue is in the path; handlers whose queue is in the body or in
//! a receipt call [`Caller::allow`]. Nothing is written before either refuses.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use redrive_core::broker::DocKind;
use redrive_core::time::{Clock, SystemClock};
use redrive_core::{Broker, Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::Shared;

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Send,
    Receive,
    Read,
    Manage,
    Triage,
    Admin,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Send,
        Action::Receive,
        Action::Read,
        Action::Manage,
        Action::Triage,
        Action::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Send => "send",
            Action::Receive => "receive",
            Action::Read => "read",
            Action::Manage => "manage",
            Action::Triage => "triage",
            Action::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// `ACTION:QUEUE_GLOB`, checked when a key is created.
pub fn parse_grant(s: &str) -> Result<(Action, String)> {
    let bad = || Error::invalid("allow", format!("{s:?} is not ACTION:QUEUE_GLOB"));
    let (action, glob) = s.split_once(':').ok_or_else(bad)?;
    let action = Action::parse(action).ok_or_else(|| {
        Error::invalid(
            "allow",
            format!("{action:?} is not one of send, receive, read, manage, triage, admin"),
        )
    })?;
    let ok = !glob.is_empty()
        && glob.len() <= 80
        && glob.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.*".contains(&b));
    if !ok {
        return Err(bad());
    }
    Ok((action, glob.to_string()))
}

/// `*` matches any run of characters (none included); everything else matches itself.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    match glob.split_once('*') {
        None => glob == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else { return false };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob_matches(rest, &tail[i..]))
        }
    }
}

/// A key as the store keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// SHA-256 of the secret, hex: what a bearer token is checked against.
    pub secret_sha256: String,
    /// The secret itself, for SigV4 (an HMAC the server must recompute).
    pub sigv4_secret: String,
    /// `ACTION:QUEUE_GLOB` grants.
    pub allow: Vec<String>,
    pub created_at: u64,
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Requests per second this key may make, on each server.
    #[serde(default)]
    pub rate_per_s: Option<u32>,
    #[serde(default)]
    pub revoked_at: Option<u64>,
}

/// What `GET /v1/keys` shows of a key: everything but its secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub allow: Vec<String>,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub rate_per_s: Option<u32>,
    pub revoked_at: Option<u64>,
}

impl KeyRecord {
    pub fn info(&self) -> KeyInfo {
        KeyInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            allow: self.allow.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            rate_per_s: self.rate_per_s,
            revoked_at: self.revoked_at,
        }
    }

    /// Whether a grant covers `action` on `queue` (`None`: on some queue, for listings).
    pub fn allows(&self, action: Action, queue: Option<&str>) -> bool {
        self.allow.iter().filter_map(|g| parse_grant(g).ok()).any(|(a, glob)| {
            (a == action || a == Action::Admin) && queue.is_none_or(|q| glob_matches(&glob, q))
        })
    }

    /// Whether the key can be used now.
    fn live(&self, now: u64) -> std::result::Result<(), &'static str> {
        if self.revoked_at.is_some() {
            return Err("the key was revoked");
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            return Err("the key has expired");
        }
        Ok(())
    }
}

/// A new key and its secret, which is shown once and never stored in the clear for bearer use.
pub struct NewKey {
    pub record: KeyRecord,
    pub secret: String,
}

/// Makes a key: a 20-character id (as AWS access key ids are) and a 40-character secret.
pub fn new_key(
    name: &str,
    allow: &[String],
    expires_at: Option<u64>,
    rate_per_s: Option<u32>,
) -> Result<NewKey> {
    if name.is_empty() || name.len() > 128 {
        return Err(Error::invalid("name", "a key name has 1 to 128 bytes"));
    }
    if allow.is_empty() {
        return Err(Error::invalid("allow", "give at least one ACTION:QUEUE_GLOB"));
    }
    for g in allow {
        parse_grant(g)?;
    }
    let id = format!("RDK{}", random_text(17, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")?);
    let secret =
        random_text(40, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")?;
    Ok(NewKey { record: record(id, name, &secret, allow, expires_at, rate_per_s), secret })
}

/// A key with a given id and secret (the first admin key, from the environment).
pub fn record(
    id: String,
    name: &str,
    secret: &str,
    allow: &[String],
    expires_at: Option<u64>,
    rate_per_s: Option<u32>,
) -> KeyRecord {
    KeyRecord {
        id,
        name: name.to_string(),
        secret_sha256: sha256_hex(secret),
        sigv4_secret: secret.to_string(),
        allow: allow.to_vec(),
        created_at: SystemClock.now_ms(),
        expires_at,
        rate_per_s,
        revoked_at: None,
    }
}

fn random_text(len: usize, alphabet: &[u8]) -> Result<String> {
    use rand::TryRngCore;
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for a key: {e}")))?;
    // 256 is a multiple of 32 and 62 is not: the bias of the secret's alphabet costs about
    // 0.02 bits a character of 5.95, far above what any attack could use.
    Ok(bytes.iter().map(|b| alphabet[*b as usize % alphabet.len()] as char).collect())
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two texts of public length.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key's document.
pub async fn load<B: Broker>(broker: &B, id: &str) -> Result<Option<KeyRecord>> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    let Some(text) = broker.get_doc(DocKind::ApiKey, id.to_string()).await? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Internal(format!("key document {id} is malformed: {e}")))
}

pub async fn store<B: Broker>(broker: &B, key: &KeyRecord) -> Result<()> {
    let text = serde_json::to_string(key).expect("a key serializes");
    broker.put_doc(DocKind::ApiKey, key.id.clone(), Some(text)).await
}

/// How a server checks requests.
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    /// Off: every request is the anonymous caller, allowed everything (loopback development).
    pub enabled: bool,
    /// `/metrics` without a key.
    pub metrics_public: bool,
}

/// Who is calling: a key, or nobody in particular on a server without `--auth`.
#[derive(Clone, Debug)]
pub enum Caller {
    Anonymous,
    Key(std::sync::Arc<KeyRecord>),
}

impl Caller {
    /// `Ok` if the caller may do `action` on `queue`, else `forbidden`.
    pub fn allow(&self, action: Action, queue: &str) -> Result<()> {
        match self {
            Caller::Anonymous => Ok(()),
            Caller::Key(k) if k.allows(action, Some(queue)) => Ok(()),
            Caller::Key(_) => {
                Err(Error::Forbidden { action: action.as_str(), queue: queue.to_string() })
            }
        }
    }

    /// `Ok` if the caller may do `action` on some queue (listings).
    pub fn allow_any(&self, action: Action) -> Result<()> {
        match self {
            Caller::Anonymous => Ok(()),
            Caller::Key(k) if k.allows(action, None) => Ok(()),
            Caller::Key(_) => Err(Error::Forbidden { action: action.as_str(), queue: "*".into() }),
        }
    }

    /// The key id, for audit entries and triage decisions.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Key(k) => Some(&k.id),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        // `require` runs on every route and puts it there; its absence is a wiring bug.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError(Error::Internal("no caller on the request".into())))
    }
}

/// Each rate-limited key's bucket on this server: up to `rate_per_s` requests at once, then one
/// more every `1000 / rate_per_s` ms. A count per calendar second let a key make twice its
/// rate across the turn of a second (its whole rate in the last milliseconds of one second and
/// again in the first of the next).
#[derive(Default)]
pub struct KeyRates {
    /// Per key id: its credit in thousandths of a request, and when it was last counted (ms).
    inner: Mutex<HashMap<String, (u64, u64)>>,
}

/// What one request costs, in the credit's units.
const REQUEST_CREDIT: u64 = 1000;

impl KeyRates {
    fn admit(&self, key: &KeyRecord, now_ms: u64) -> Result<()> {
        let Some(max) = key.rate_per_s else { return Ok(()) };
        let full = u64::from(max) * REQUEST_CREDIT;
        let mut g = self.inner.lock().expect("rate lock");
        if g.len() > redrive_core::limits::API_KEYS_COUNT_MAX {
            // Buckets a second old are full again: forgetting them changes nothing.
            g.retain(|_, (_, at)| now_ms.saturating_sub(*at) < 1000);
        }
        let (credit, at) = g.entry(key.id.clone()).or_insert((full, now_ms));
        // `max` thousandths of a request come back each millisecond: `max` per second.
        *credit = (*credit + now_ms.saturating_sub(*at) * u64::from(max)).min(full);
        *at = now_ms.max(*at);
        if *credit < REQUEST_CREDIT {
            return Err(Error::LimitExceeded { limit: "KEY_RATE_PER_S", max: u64::from(max) });
        }
        *credit -= REQUEST_CREDIT;
        Ok(())
    }
}

/// The key a bearer token names, if the token is right and the key live.
pub async fn bearer<B: Broker>(state: &Shared<B>, headers: &HeaderMap) -> Result<Option<Caller>> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().unwrap_or_default();
    let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))
    else {
        return Ok(None);
    };
    let (id, secret) = token
        .trim()
        .split_once('.')
        .ok_or_else(|| Error::Unauthorized("a token is KEY_ID.SECRET".into()))?;
    let key =
        load(&state.broker, id).await?.ok_or_else(|| Error::Unauthorized("no such key".into()))?;
    if !same(sha256_hex(secret).as_bytes(), key.secret_sha256.as_bytes()) {
        return Err(Error::Unauthorized("the key's secret is wrong".into()));
    }
    admit(state, key).map(Some)
}

/// A key whose credentials verified: live, and within its rate.
pub fn admit<B: Broker>(state: &Shared<B>, key: KeyRecord) -> Result<Caller> {
    let now = SystemClock.now_ms();
    key.live(now).map_err(|why| Error::Unauthorized(why.into()))?;
    state.rates.admit(&key, now)?;
    Ok(Caller::Key(std::sync::Arc::new(key)))
}

/// What a native route needs, from its method and path: the action and the queue in the path,
/// `Body` when the handler checks (the queue is in the body or a receipt), `Open` for none.
enum Need {
    Open,
    Queue(Action, &'static str),
    Any(Action),
    Body,
}

fn need(method: &Method, route: &str) -> Need {
    use Action::*;
    let get = method == Method::GET || method == Method::HEAD;
    match route {
        "/healthz" | "/readyz" | "/v1/openapi.json" => Need::Open,
        // The dashboard's files: no data in them; the page asks for a key for the API.
        "/ui" | "/ui/" | "/ui/{*path}" => Need::Open,
        "/metrics" => Need::Any(Read),
        "/v1/queues" => Need::Any(Read),
        "/v1/queues/{q}" if get => Need::Queue(Read, "q"),
        "/v1/queues/{q}" => Need::Queue(Manage, "q"),
        "/v1/queues/{q}/stats" | "/v1/queues/{q}/dead" => Need::Queue(Read, "q"),
        "/v1/queues/{q}/jobs" if get => Need::Queue(Read, "q"),
        "/v1/queues/{q}/jobs" => Need::Queue(Send, "q"),
        "/v1/queues/{q}/dead/groups" => Need::Queue(Read, "q"),
        "/v1/queues/{q}/jobs/delete" | "/v1/queues/{q}/pause" | "/v1/queues/{q}/resume" => {
            Need::Queue(Manage, "q")
        }
        // The queues each point shows are narrowed to the key's in the handler.
        "/v1/history" => Need::Any(Read),
        "/v1/queues/{q}/receive" => Need::Queue(Receive, "q"),
        "/v1/queues/{q}/redrive" | "/v1/queues/{q}/purge" => Need::Queue(Manage, "q"),
        "/v1/triage/policies" if get => Need::Any(Read),
        "/v1/triage/policies/{queue}" if get => Need::Queue(Read, "queue"),
        "/v1/triage/policies/{queue}" => Need::Queue(Triage, "queue"),
        "/v1/triage/proposals" | "/v1/triage/proposals/{id}" if get => Need::Any(Read),
        "/v1/keys" | "/v1/keys/{id}" | "/v1/audit" => Need::Any(Admin),
        // The queue is in the body (receive from several), in a receipt (ack, fail, extend), in
        // the job (by id) or in the proposal; the SQS door checks SigV4 and its actions.
        "/v1/receive" | "/v1/ack" | "/v1/fail" | "/v1/extend" | "/v1/jobs/{id}" => Need::Body,
        "/v1/jobs/{id}/redrive" => Need::Body,
        // Any valid key may ask who it is.
        "/v1/whoami" => Need::Body,
        "/v1/triage/proposals"
        | "/v1/triage/proposals/{id}/approve"
        | "/v1/triage/proposals/{id}/reject" => Need::Body,
        "/" | "/{account}/{queue}" => Need::Body,
        // A route missing from this table is for admins only until it is added: fail closed.
        _ => Need::Any(Admin),
    }
}

/// Authenticates every request and authorizes those whose queue is in the path.
pub async fn require<B: Broker>(
    State(state): State<Shared<B>>,
    mut req: Request,
    next: Next,
) -> Response {
    let from = req.extensions().get::<crate::conn::Peer>().and_then(crate::conn::Peer::addr);
    // The audit entries the request writes say where it came from.
    crate::audit::FROM
        .scope(from, async move {
            match check(&state, &mut req).await {
                Ok(()) => next.run(req).await,
                Err(e) => {
                    if let Error::Unauthorized(why) = &e {
                        crate::audit::Failures::count(&state, why).await;
                    }
                    ApiError(e).into_response()
                }
            }
        })
        .await
}

async fn check<B: Broker>(state: &Shared<B>, req: &mut Request) -> Result<()> {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let sqs = crate::sqs::protocol_of(req.method(), req.uri(), req.headers()).is_some();
    same_site(req, sqs)?;
    if !state.auth.enabled {
        req.extensions_mut().insert(Caller::Anonymous);
        return Ok(());
    }
    let need = match route.as_deref() {
        Some(r) => need(req.method(), r),
        None => Need::Open, // no route: the fallback answers 404, which tells nothing
    };
    let metrics = route.as_deref() == Some("/metrics");
    if matches!(need, Need::Open) || (metrics && state.auth.metrics_public) {
        req.extensions_mut().insert(Caller::Anonymous);
        return Ok(());
    }
    // The SQS door authenticates with SigV4 over the body, in its handler; a bearer token
    // there is also taken.
    let caller = match bearer(state, req.headers()).await? {
        Some(c) => c,
        None if sqs => {
            return Ok(());
        }
        None => return Err(Error::Unauthorized("send Authorization: Bearer KEY_ID.SECRET".into())),
    };
    match need {
        Need::Queue(action, param) => {
            let queue = path_param(req, route.as_deref().unwrap_or_default(), param);
            caller.allow(action, &queue)?;
        }
        Need::Any(action) => caller.allow_any(action)?,
        Need::Open | Need::Body => {}
    }
    req.extensions_mut().insert(caller);
    Ok(())
}

/// Refuses what a web page in a browser could make a browser send to a server it can reach
/// (with or without `--auth`; without it, this is all that stands between a page and the
/// queues): a request whose `Origin` is another site than its `Host` (browsers send `Origin`
/// with every cross-site `POST`), and a native `POST` of a form or text, the bodies a page may
/// post cross-site without asking (`application/json`, and other methods, need the server's
/// consent, which it never gives). The SQS door's own rule (signed or not a change) is in `sqs`.
fn same_site(req: &Request, sqs: bool) -> Result<()> {
    let headers = req.headers();
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
        let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
        if origin == "null" || Some(origin_host) != host {
            return Err(Error::Forbidden { action: "cross-site request", queue: "*".into() });
        }
    }
    if req.method() == Method::POST && !sqs {
        let form = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| {
                matches!(
                    v.as_str(),
                    "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
                )
            });
        if form {
            return Err(Error::MalformedRequest(
                "send the body as Content-Type: application/json".into(),
            ));
        }
    }
    Ok(())
}

/// The path segment that stands where `{param}` stands in `route`.
fn path_param(req: &Request, route: &str, param: &str) -> String {
    let want = format!("{{{param}}}");
    route
        .split('/')
        .zip(req.uri().path().split('/'))
        .find(|(r, _)| *r == want)
        .map(|(_, v)| percent_decode(v))
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_matches("*", "orders"));
        assert!(glob_matches("orders-*", "orders-eu"));
        assert!(glob_matches("orders-*", "orders-"));
        assert!(!glob_matches("orders-*", "order"));
        assert!(!glob_matches("orders", "orders-eu"));
        assert!(glob_matches("*-dlq", "payments-dlq"));
        assert!(!glob_matches("*-dlq", "payments-dlq2"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
    }

    #[test]
    fn grants_are_checked_when_parsed() {
        assert_eq!(parse_grant("send:orders-*").unwrap(), (Action::Send, "orders-*".into()));
        assert!(parse_grant("send").is_err());
        assert!(parse_grant("fly:*").is_err());
        assert!(parse_grant("send:").is_err());
        assert!(parse_grant("send:a/b").is_err());
    }

    #[test]
    fn admin_implies_every_action_and_others_only_their_own() {
        let k = record("K".into(), "k", "s", &["admin:*".into()], None, None);
        assert!(Action::ALL.iter().all(|a| k.allows(*a, Some("q"))));
        let k = record("K".into(), "k", "s", &["send:orders-*".into()], None, None);
        assert!(k.allows(Action::Send, Some("orders-1")));
        assert!(!k.allows(Action::Send, Some("payments")));
        assert!(!k.allows(Action::Receive, Some("orders-1")));
        assert!(k.allows(Action::Send, None));
        assert!(!k.allows(Action::Read, None));
    }

    #[test]
    fn a_key_makes_its_rate_in_any_second_never_twice_it_across_a_second_boundary() {
        let rates = KeyRates::default();
        let k = record("K".into(), "k", "s", &["read:*".into()], None, Some(2));
        let admit = |at: u64| rates.admit(&k, at).is_ok();
        // Its whole rate at once, at the end of a calendar second...
        assert!(admit(10_998) && admit(10_999));
        // ... and not again at the start of the next: one more each 500 ms.
        assert!(!admit(11_000));
        assert!(!admit(11_497));
        assert!(admit(11_499));
        assert!(!admit(11_500));
        // Idle, the credit fills up to the rate, no further.
        assert!(admit(20_000) && admit(20_000) && !admit(20_000));
        // A clock step back refuses nothing it would not have refused.
        assert!(!admit(19_000));
        assert!(admit(20_500));
        // Keys without a rate are not counted.
        let free = record("F".into(), "f", "s", &["read:*".into()], None, None);
        assert!((0..100).all(|_| rates.admit(&free, 0).is_ok()));
    }

    #[test]
    fn new_keys_are_random_and_checked() {
        let a = new_key("a", &["read:*".into()], None, None).unwrap();
        let b = new_key("a", &["read:*".into()], None, None).unwrap();
        assert_ne!(a.record.id, b.record.id);
        assert_ne!(a.secret, b.secret);
        assert_eq!((a.record.id.len(), a.secret.len()), (20, 40));
        assert_eq!(a.record.secret_sha256, sha256_hex(&a.secret));
        assert!(new_key("a", &[], None, None).is_err());
        assert!(new_key("a", &["nope".into()], None, None).is_err());
    }
}
