//! Admission under load: the server-wide budget of requests in flight and each remote address's
//! share of it, the deadline on reading a request body, and long polls (counted per caller, and
//! abandoned the moment their client goes away).
//!
//! Why one middleware with a shared semaphore and not tower's `concurrency_limit`: `Router::layer`
//! gives every route its own copy of a layer, so that limit was per route, and slow uploads to
//! one route starved it while the others idled. `/healthz` and `/readyz` bypass the budget: a
//! load balancer must still see a flooded server as alive.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};
use redrive_core::{limits, Broker, Error, Result};
use tokio::sync::Semaphore;

use crate::auth::Caller;
use crate::conn::Peer;
use crate::error::ApiError;
use crate::Shared;

/// The limits [`Overload`] enforces (tests shrink them to see them act).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverloadLimits {
    /// `REQUESTS_IN_FLIGHT_MAX`: requests in flight on the whole server.
    pub in_flight_max: usize,
    /// `REQUESTS_IN_FLIGHT_PER_PEER_MAX`: of those, from one remote address.
    pub in_flight_per_peer_max: usize,
    /// `REQUEST_BODY_READ_TIMEOUT_MS`.
    pub body_read_timeout: Duration,
    /// `LONG_POLLS_PER_CALLER_MAX`.
    pub long_polls_per_caller_max: u32,
}

impl Default for OverloadLimits {
    fn default() -> OverloadLimits {
        OverloadLimits {
            in_flight_max: limits::REQUESTS_IN_FLIGHT_MAX,
            in_flight_per_peer_max: limits::REQUESTS_IN_FLIGHT_PER_PEER_MAX,
            body_read_timeout: Duration::from_millis(limits::REQUEST_BODY_READ_TIMEOUT_MS),
            long_polls_per_caller_max: limits::LONG_POLLS_PER_CALLER_MAX,
        }
    }
}

/// The counts behind [`OverloadLimits`], one per server.
pub struct Overload {
    limits: OverloadLimits,
    in_flight: Semaphore,
    /// Requests in flight per remote address; an address leaves the map at zero.
    by_peer: Mutex<HashMap<IpAddr, usize>>,
    /// Long polls open per caller; a caller leaves the map at zero.
    long_polls: Mutex<HashMap<Bucket, u32>>,
}

impl Overload {
    pub fn new(limits: OverloadLimits) -> Overload {
        Overload {
            limits,
            in_flight: Semaphore::new(limits.in_flight_max),
            by_peer: Mutex::default(),
            long_polls: Mutex::default(),
        }
    }

    /// Requests in flight now, counted against `in_flight_max`.
    pub fn in_flight(&self) -> usize {
        self.limits.in_flight_max - self.in_flight.available_permits()
    }

    /// Long polls open now, all callers together.
    pub fn long_polls_open(&self) -> u64 {
        self.long_polls.lock().unwrap().values().map(|&n| u64::from(n)).sum()
    }

    /// Runs `poll`, a receive that may wait, counted against `client`'s
    /// `LONG_POLLS_PER_CALLER_MAX`, and abandons it (releasing its count at once) when the client
    /// closes its side of the connection.
    ///
    /// Only receives race the client's end of stream: a client that half-closed after sending
    /// cannot be told from one that went away, and every other request runs to its reply (the
    /// reply a half-closed client waits for), while a long poll would lease a job to nobody and
    /// hide it for a whole lease.
    pub(crate) async fn long_poll<T>(
        &self,
        client: &Client,
        poll: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let _slot = self.take_long_poll(&client.bucket)?;
        let Some(peer) = &client.peer else { return poll.await };
        tokio::select! {
            r = poll => r,
            () = peer.closed() => {
                tracing::debug!("client closed during a long poll; abandoning it");
                Err(Error::ShuttingDown)
            }
        }
    }

    fn take_long_poll(&self, bucket: &Bucket) -> Result<LongPollSlot<'_>> {
        let max = self.limits.long_polls_per_caller_max;
        let mut open = self.long_polls.lock().unwrap();
        let n = match open.get_mut(bucket) {
            Some(n) => n,
            None => open.entry(bucket.clone()).or_insert(0),
        };
        if *n >= max {
            return Err(Error::LimitExceeded {
                limit: "LONG_POLLS_PER_CALLER_MAX",
                max: max.into(),
            });
        }
        *n += 1;
        Ok(LongPollSlot { overload: self, bucket: bucket.clone() })
    }

    fn take_peer(&self, addr: IpAddr) -> Option<PeerSlot<'_>> {
        let mut by_peer = self.by_peer.lock().unwrap();
        let n = by_peer.entry(addr).or_insert(0);
        if *n >= self.limits.in_flight_per_peer_max {
            return None;
        }
        *n += 1;
        Some(PeerSlot { overload: self, addr })
    }
}

impl Default for Overload {
    fn default() -> Overload {
        Overload::new(OverloadLimits::default())
    }
}

/// Whom a long poll is counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    Key(String),
    Addr(IpAddr),
    /// Anonymous requests whose address is unknown (the router served in process).
    Anonymous,
}

/// A receive's caller and the socket it came on.
#[derive(Clone)]
pub(crate) struct Client {
    bucket: Bucket,
    peer: Option<Peer>,
}

impl Client {
    pub(crate) fn new(caller: &Caller, peer: Option<Peer>) -> Client {
        let bucket = match (caller.key_id(), peer.as_ref().and_then(Peer::addr)) {
            (Some(id), _) => Bucket::Key(id.to_owned()),
            (None, Some(addr)) => Bucket::Addr(addr),
            (None, None) => Bucket::Anonymous,
        };
        Client { bucket, peer }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Client, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        Ok(Client::new(&caller, parts.extensions.get::<Peer>().cloned()))
    }
}

struct LongPollSlot<'a> {
    overload: &'a Overload,
    bucket: Bucket,
}

impl Drop for LongPollSlot<'_> {
    fn drop(&mut self) {
        let mut open = self.overload.long_polls.lock().unwrap();
        if let Some(n) = open.get_mut(&self.bucket) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.bucket);
            }
        }
    }
}

struct PeerSlot<'a> {
    overload: &'a Overload,
    addr: IpAddr,
}

impl Drop for PeerSlot<'_> {
    fn drop(&mut self) {
        let mut by_peer = self.overload.by_peer.lock().unwrap();
        if let Some(n) = by_peer.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                by_peer.remove(&self.addr);
            }
        }
    }
}

/// Middleware: admits a request within the server's and its address's budget of requests in
/// flight (503 `overloaded` past either), and puts a deadline on reading its body.
pub(crate) async fn admit<B: Broker>(
    State(s): State<Shared<B>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    let o = &s.overload;
    let Ok(_permit) = o.in_flight.try_acquire() else {
        return ApiError(Error::Overloaded).into_response();
    };
    let addr = req.extensions().get::<Peer>().and_then(Peer::addr);
    let _peer = match addr {
        Some(addr) => match o.take_peer(addr) {
            Some(slot) => Some(slot),
            None => return ApiError(Error::Overloaded).into_response(),
        },
        None => None,
    };
    let timed_out = Arc::new(AtomicBool::new(false));
    let sleep = Box::pin(tokio::time::sleep(o.limits.body_read_timeout));
    let flag = timed_out.clone();
    let req = req.map(|body| Body::new(Deadline { body, sleep, timed_out: flag }));
    let mut resp = next.run(req).await;
    if timed_out.load(Ordering::Relaxed) {
        // The rest of the body was never read: the connection cannot carry another request.
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A request body that fails once `sleep` ends while it still waits for data. Data already
/// received is always delivered first: a handler that reads late is not penalised.
struct Deadline {
    body: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

/// The error a [`Deadline`] body ends with.
#[derive(Debug)]
struct BodyReadTimedOut;

impl std::fmt::Display for BodyReadTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body read timed out")
    }
}

impl std::error::Error for BodyReadTimedOut {}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        ready!(this.sleep.as_mut().poll(cx));
        this.timed_out.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(Box::new(BodyReadTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The API error for a body that could not be read: too large (413), too slow (400 naming
/// `REQUEST_BODY_READ_TIMEOUT_MS`), or broken off (400).
pub(crate) fn body_error(e: &BytesRejection) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::RequestTooLarge { max: limits::REQUEST_BODY_MAX_BYTES as u64 };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<BodyReadTimedOut>() {
            return Error::MalformedRequest(
                "the request body was not received within REQUEST_BODY_READ_TIMEOUT_MS".into(),
            );
        }
        source = s.source();
    }
    tracing::debug!(error = %e, "could not read a request body");
    Error::MalformedRequest("the request body could not be read".into())
}
