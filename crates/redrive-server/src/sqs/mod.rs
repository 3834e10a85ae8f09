//! The SQS API on the main port: both wire protocols (AWS JSON 1.0 and Query) over the same
//! queues as the native API. See docs/sqs-compatibility.md.
//!
//! # Layout
//! - `wire`: parsing either protocol into one JSON shape, rendering answers and errors back.
//! - `error`: SQS's error codes and the mapping from redrive's errors.
//! - `actions`: the closed [`actions::SqsAction`] enum, one file per action.
//! - `attributes`: queue attributes to and from the queue configuration.
//! - `message`: message attributes, MD5 digests, body rules.
//! - `moves`: message move tasks (StartMessageMoveTask and friends).

mod actions;
mod attributes;
mod door;
pub mod error;
mod message;
mod moves;
pub mod wire;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use redrive_core::{Broker, Error};

pub use actions::{ReceiveAttempts, SqsAction};
pub use moves::MoveTasks;

use crate::auth::Caller;
use crate::Shared;
use error::{SqsError, SqsResult};
pub(crate) use wire::Protocol;

/// SQS identity settings.
#[derive(Clone, Debug)]
pub struct SqsSettings {
    /// The account id in queue URLs and ARNs.
    pub account_id: String,
    pub region: String,
    /// The base of queue URLs (`https://sqs.example.com`), so that they do not depend on the
    /// `Host` a client sent; without it, queue URLs use the request's `Host`.
    pub public_url: Option<String>,
}

impl Default for SqsSettings {
    fn default() -> SqsSettings {
        SqsSettings {
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            public_url: None,
        }
    }
}

pub fn routes<B: Broker>() -> Router<Shared<B>> {
    Router::new()
        .route("/", post(at_root::<B>).get(at_root::<B>))
        .route("/{account}/{queue}", post(at_queue::<B>).get(at_queue::<B>))
}

/// What an action sees: the server, the request's host for the queue URLs it hands out, and
/// its region.
///
/// Each region is its own namespace of queues, as on AWS: a request's region is its SigV4
/// credential scope's, else the one in an `sqs.<region>.…` host, else the configured one. The
/// configured region's queues are the queues the native API sees by name; another region's
/// queue `q` is the queue `<region>:q` there. Queue URLs and ARNs name the bare name (and, in
/// ARNs, the region).
pub struct Cx<'a, B> {
    pub state: &'a Shared<B>,
    host: String,
    region: String,
    /// The queue of a Query request posted to its queue URL.
    path_queue: Option<String>,
    /// Whom a long poll is counted against, and its socket.
    pub(crate) client: crate::overload::Client,
    /// The request's trace context (`X-Amzn-Trace-Id` or `traceparent`).
    pub(crate) trace: Option<opentelemetry::trace::SpanContext>,
}

impl<B: Broker> Cx<'_, B> {
    pub fn broker(&self) -> &B {
        &self.state.broker
    }

    pub fn settings(&self) -> &SqsSettings {
        &self.state.sqs
    }

    /// The store's name of this region's queue `name`.
    pub fn internal(&self, name: &str) -> String {
        internal_name(&self.state.sqs.region, &self.region, name)
    }

    /// Whether a store queue is one of this request's region.
    pub fn in_region(&self, internal: &str) -> bool {
        self.region_of_queue(internal) == self.region
    }

    /// The region of a store queue.
    pub fn region_of_queue<'q>(&'q self, internal: &'q str) -> &'q str {
        split_region(internal).0.unwrap_or(&self.state.sqs.region)
    }

    /// The URL of a store queue (of this request's region).
    pub fn queue_url(&self, internal: &str) -> String {
        let name = bare_name(internal);
        let account = &self.state.sqs.account_id;
        match &self.state.sqs.public_url {
            Some(base) => format!("{}/{account}/{name}", base.trim_end_matches('/')),
            None => format!("http://{}/{account}/{name}", self.host),
        }
    }

    /// The ARN of a store queue, in its own region.
    pub fn arn(&self, internal: &str) -> String {
        let (region, name) = (self.region_of_queue(internal), bare_name(internal));
        format!("arn:aws:sqs:{region}:{}:{name}", self.state.sqs.account_id)
    }

    /// The store queue a `QueueUrl` names (see [`queue_of_url`]) in this request's region, or
    /// without one the queue of the URL the request was posted to. Anything else names no
    /// queue: `QueueDoesNotExist`.
    pub fn queue_name(&self, url: Option<&str>) -> SqsResult<String> {
        let name = match url {
            Some(u) => queue_of_url(u),
            None => Some(self.path_queue.as_deref().ok_or_else(|| SqsError::missing("QueueUrl"))?),
        };
        match name {
            Some(name) if sqs_queue_name(name) => Ok(self.internal(name)),
            _ => Err(error::NON_EXISTENT_QUEUE.err()),
        }
    }

    /// The store queue an ARN names (`arn:aws:sqs:region:account:name`), in the ARN's region.
    pub fn queue_of_arn(&self, arn: &str) -> SqsResult<String> {
        queue_of_arn(&self.state.sqs.region, arn)
            .ok_or_else(|| error::NOT_A_QUEUE_ARN.with(&[("arn", &arn)]))
    }

    /// Refuses a move-task call whose source queue `name` does not exist, as SQS answers those
    /// calls (`ResourceNotFoundException`); other store errors are answered as they are.
    pub async fn require_move_source(&self, name: &str) -> SqsResult<()> {
        match self.broker().get_queue(name.to_owned()).await {
            Err(redrive_core::Error::QueueNotFound(_)) => Err(error::MOVE_SOURCE_MISSING.err()),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }
}

/// A queue name as SQS has them: the store's names without a region namespace.
pub(crate) fn sqs_queue_name(name: &str) -> bool {
    !name.contains(':') && redrive_core::model::valid_queue_name(name)
}

/// The store's name of queue `name` of `region`, where `home` is the configured region.
fn internal_name(home: &str, region: &str, name: &str) -> String {
    if region == home {
        name.to_owned()
    } else {
        format!("{region}:{name}")
    }
}

/// A store queue's region namespace (none for the configured region) and bare name.
fn split_region(internal: &str) -> (Option<&str>, &str) {
    match internal.split_once(':') {
        Some((region, name)) => (Some(region), name),
        None => (None, internal),
    }
}

/// A store queue's name without its region namespace.
pub(crate) fn bare_name(internal: &str) -> &str {
    split_region(internal).1
}

/// The region a request is for: its SigV4 credential scope's (header or presigned query), else
/// an `sqs.<region>.` host's, else `home`.
fn region_of(home: &str, uri: &Uri, headers: &HeaderMap) -> String {
    let scope = |credential: &str| credential.split('/').nth(2).map(str::to_owned);
    let from_header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| scope(c.split([',', ' ']).next().unwrap_or_default()));
    let from_query = || {
        uri.query()?.split('&').find_map(|p| {
            let v = p.strip_prefix("X-Amz-Credential=")?;
            scope(&v.replace("%2F", "/").replace("%2f", "/"))
        })
    };
    let from_host = || {
        let host = headers.get(axum::http::header::HOST)?.to_str().ok()?;
        let rest = host.strip_prefix("sqs.")?;
        Some(rest.split('.').next()?.to_owned()).filter(|r| rest.len() > r.len())
    };
    from_header
        .or_else(from_query)
        .or_else(from_host)
        .filter(|r| redrive_core::model::valid_region(r))
        .unwrap_or_else(|| home.to_owned())
}

/// The queue name in a queue URL as SQS hands them out: `http(s)://<host>/<account>/<name>`,
/// exactly. Whatever the host (clients reach redrive under many names), but nothing that a
/// path resolver or proxy could read as another queue: no `..` or `.` segments, no empty or
/// extra segments, no trailing slash, query or fragment, no percent-escapes (a queue name
/// never needs one). `None` is a URL that names no queue.
pub(crate) fn queue_of_url(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let mut parts = rest.split('/');
    let (host, account, name) = (parts.next()?, parts.next()?, parts.next()?);
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    let ok = parts.next().is_none() && host_ok && is_account(account) && sqs_queue_name(name);
    ok.then_some(name)
}

/// The store queue an SQS queue ARN names, `arn:<partition>:sqs:<region>:<12-digit
/// account>:<name>`, in the ARN's region (`home` being the configured one).
pub(crate) fn queue_of_arn(home: &str, arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, "sqs", region, account, name]
            if !partition.is_empty()
                && redrive_core::model::valid_region(region)
                && is_account(account)
                && sqs_queue_name(name) =>
        {
            Some(internal_name(home, region, name))
        }
        _ => None,
    }
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

async fn at_root<B: Broker>(
    State(state): State<Shared<B>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    sender: Sender,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // A bare GET / is someone looking around, not an SQS request.
    if method == Method::GET && uri.query().is_none() {
        return crate::error::ApiError(Error::RouteNotFound).into_response();
    }
    handle(state, None, method, uri, headers, sender, body).await
}

async fn at_queue<B: Broker>(
    State(state): State<Shared<B>>,
    Path((account, queue)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    sender: Sender,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Queue URLs have a 12-digit account; anything else is a native path that does not exist.
    if !is_account(&account) {
        return crate::error::ApiError(Error::RouteNotFound).into_response();
    }
    // A queue URL opened in a browser (or fetched by a health check) names no operation.
    let json = headers.contains_key("x-amz-target");
    if method == Method::GET && !json && !has_action(uri.query()) {
        let e = error::NO_OPERATION.err();
        return wire::error(Protocol::Query, &e, &uuid::Uuid::now_v7().to_string());
    }
    handle(state, Some(queue), method, uri, headers, sender, body).await
}

fn has_action(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|p| p.starts_with("Action=")))
}

/// What the auth middleware and the connection know of a request's sender: the key of a bearer
/// token (a SigV4 signature is checked later, over the body), and the socket.
struct Sender {
    bearer: Option<Extension<Caller>>,
    peer: Option<crate::conn::Peer>,
}

impl<S: Send + Sync> FromRequestParts<S> for Sender {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Sender, Self::Rejection> {
        let bearer = parts.extensions.get::<Caller>().cloned().map(Extension);
        Ok(Sender { bearer, peer: parts.extensions.get::<crate::conn::Peer>().cloned() })
    }
}

/// The protocol of a request to the SQS routes (`None` for any other request), as `at_root`
/// and `at_queue` tell them apart, for answers that do not come from them (limits, rejections).
pub(crate) fn protocol_of(method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Protocol> {
    let path = uri.path();
    let at_root = path == "/" && !(method == Method::GET && uri.query().is_none());
    let mut segments = path.strip_prefix('/')?.split('/');
    let at_queue = matches!(
        (segments.next(), segments.next(), segments.next()),
        (Some(account), Some(q), None)
            if !q.is_empty() && is_account(account)
    );
    if !at_root && !at_queue {
        return None;
    }
    Some(if headers.contains_key("x-amz-target") { Protocol::Json } else { Protocol::Query })
}

/// `e` in SQS's error shape for `protocol`.
pub(crate) fn error_response(protocol: Protocol, e: Error) -> Response {
    wire::error(protocol, &e.into(), &uuid::Uuid::now_v7().to_string())
}

async fn handle<B: Broker>(
    state: Shared<B>,
    path_queue: Option<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    sender: Sender,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request_id = uuid::Uuid::now_v7().to_string();
    let protocol =
        if headers.contains_key("x-amz-target") { Protocol::Json } else { Protocol::Query };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let e = crate::overload::body_error(&e);
            return wire::error(protocol, &e.into(), &request_id);
        }
    };
    let caller = match door::caller(&state, &method, &uri, &headers, &body, sender.bearer).await {
        Ok(c) => c,
        Err(e) => {
            crate::audit::Failures::count(&state, "sqs request not authenticated").await;
            return wire::error(protocol, &e, &request_id);
        }
    };
    let mut request = match wire::parse(&headers, uri.query(), &body) {
        Ok(r) => r,
        Err(e) => return wire::error(protocol, &e, &request_id),
    };
    // A Query request that accepts only JSON is answered as the JSON protocol answers.
    let wants_json = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().starts_with("application/json")));
    if wants_json {
        request.protocol = Protocol::Json;
    }
    // Account-level actions have no queue: posted to a queue URL, they are not valid there.
    let account_level = |a: SqsAction| matches!(a, SqsAction::CreateQueue | SqsAction::ListQueues);
    let action = SqsAction::from_name(&request.action)
        .filter(|a| path_queue.is_none() || !account_level(*a));
    let Some(action) = action else {
        let e = error::INVALID_ACTION.with(&[("action", &request.action)]);
        return wire::error(request.protocol, &e, &request_id);
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let client = crate::overload::Client::new(&caller, sender.peer);
    let trace = crate::traces::from_headers(&headers);
    let region = region_of(&state.sqs.region, &uri, &headers);
    let cx = Cx { state: &state, host, region, path_queue, client, trace };
    if let Err(e) = door::allow(&cx, &caller, action, &method, &uri, &headers, &request.params) {
        return wire::error(request.protocol, &e, &request_id);
    }
    match action.run(&cx, request.params).await {
        Ok(result) => {
            state.metrics.sqs_action(action.name(), "ok");
            wire::ok(request.protocol, action.name(), result, &request_id)
        }
        Err(e) => {
            state.metrics.sqs_action(action.name(), &format!("{:?}", e.code()));
            wire::error(request.protocol, &e, &request_id)
        }
    }
}
