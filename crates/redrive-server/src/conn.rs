//! Connections: the accept loop, the cap on open connections, the idle timeout, TLS, which HTTP
//! versions are spoken, half-closed clients and graceful shutdown. One hyper connection per
//! socket serves the router.
//!
//! Why our own loop and not `axum::serve`: that one has no cap and no idle timeout, so idle sockets
//! could use up the process's file descriptors until the WAL could not open its next segment
//! (EMFILE poisons the store).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use redrive_core::limits;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tls::Tls;

/// How the connections of a listener are spoken.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Plain TCP. HTTP/1.1 only, unless `http2`: then HTTP/2 with prior knowledge (h2c) too.
    ///
    /// h2c is opt-in because next to no legitimate client of this server speaks it: AWS SDKs,
    /// boto3 and the aws CLI speak HTTP/1.1 to SQS, browsers never speak h2c, and what does send
    /// it is mostly request-smuggling probes aimed at proxies that pass it through unchecked.
    Cleartext { http2: bool },
    /// Every connection starts with a TLS handshake (with the certificate current at accept);
    /// ALPN then picks HTTP/2 or HTTP/1.1.
    Tls(Tls),
}

impl Transport {
    /// `http` or `https`, for the URL the server prints.
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Cleartext { .. } => "http",
            Transport::Tls(_) => "https",
        }
    }
}

impl Default for Transport {
    fn default() -> Transport {
        Transport::Cleartext { http2: false }
    }
}

/// A bound socket and how its connections are spoken. A bare `TcpListener` converts to
/// cleartext HTTP/1.1.
#[derive(Debug)]
pub struct Listener {
    pub tcp: TcpListener,
    pub transport: Transport,
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Listener {
        Listener { tcp, transport: Transport::default() }
    }
}

/// The connection limits `serve` enforces (tests shrink them to see them act).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once; one more is answered 503 and closed at once.
    pub open_max: usize,
    /// How long a connection may wait for a request head, idle between requests included.
    pub idle_timeout: Duration,
}

impl ConnLimits {
    /// The limits of `limits`, with the connection cap fitted under this process's descriptor
    /// limit (`RLIMIT_NOFILE`, soft).
    pub fn from_process() -> ConnLimits {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let open_max = open_max_for(nofile);
        if open_max < limits::CONNECTIONS_OPEN_MAX {
            tracing::info!(
                open_max,
                nofile = nofile.unwrap_or(u64::MAX),
                "connections capped by the file descriptor limit; raise `ulimit -n` for more"
            );
        }
        ConnLimits {
            open_max,
            idle_timeout: Duration::from_millis(limits::CONNECTION_IDLE_TIMEOUT_MS),
        }
    }
}

/// The connection cap under a descriptor limit of `nofile` (`None`: unlimited): at most half of
/// it, leaving at least `FILE_DESCRIPTORS_RESERVED_MIN` to the store (the WAL keeps every
/// segment open), and never above `CONNECTIONS_OPEN_MAX`.
pub fn open_max_for(nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else { return limits::CONNECTIONS_OPEN_MAX };
    let reserved = (nofile / 2).max(limits::FILE_DESCRIPTORS_RESERVED_MIN);
    let open_max = nofile.saturating_sub(reserved).max(limits::CONNECTIONS_OPEN_MIN as u64);
    open_max.min(limits::CONNECTIONS_OPEN_MAX as u64) as usize
}

/// Accepts until `shutdown` resolves, then closes the listener (new connections are refused by
/// the kernel), asks every connection to close after its current request, and waits at most
/// `drain` for them.
pub(crate) async fn run(
    listener: Listener,
    app: Router,
    conn: ConnLimits,
    shutdown: impl Future<Output = ()>,
    on_stop: impl Future<Output = ()>,
    drain: Duration,
) {
    let Listener { tcp: listener, transport } = listener;
    let slots = Arc::new(Semaphore::new(conn.open_max));
    let http = Arc::new(Http::new(conn.idle_timeout));
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut at_cap = false;
    loop {
        let tcp = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // EMFILE and friends: the descriptors come back as connections close.
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Past the cap: answer at once and close, rather than leave the client in the kernel's
        // backlog, where it would hang with no reason given until its own timeout.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Logged once per episode at the cap, not once per refused connection (a flood).
            if !at_cap {
                tracing::warn!(open_max = conn.open_max, "connections at CONNECTIONS_OPEN_MAX");
                at_cap = true;
            }
            // A TLS client would read a cleartext reply as a broken handshake, and a handshake
            // costs more than it is worth under a flood: it is just closed.
            if matches!(transport, Transport::Cleartext { .. }) {
                refuse(tcp);
            }
            continue;
        };
        at_cap = false;
        // Small replies must not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let (http, app, stop) = (http.clone(), app.clone(), stop.clone());
        let connection = match &transport {
            Transport::Cleartext { http2 } => Connection::Cleartext { http2: *http2 },
            // The acceptor is taken now: a reload applies to connections accepted after it.
            Transport::Tls(tls) => Connection::Tls(tls.acceptor()),
        };
        connections.spawn(async move {
            serve_connection(Arc::new(tcp), connection, &http, app, &stop, conn.idle_timeout).await;
            drop(slot);
        });
    }
    drop(listener);
    on_stop.await;
    stop.cancel();
    connections.close();
    if tokio::time::timeout(drain, connections.wait()).await.is_err() {
        tracing::warn!(
            drain_ms = drain.as_millis() as u64,
            "in-flight requests did not finish in time"
        );
    }
}

/// The HTTP side of connections, one builder per kind of connection.
struct Http {
    /// HTTP/1.1 only: cleartext by default, and TLS connections that did not negotiate h2.
    http1: auto::Builder<TokioExecutor>,
    /// HTTP/2 only: TLS connections that negotiated h2 by ALPN.
    http2: auto::Builder<TokioExecutor>,
    /// Either, told apart by the HTTP/2 preface: cleartext with h2c allowed.
    either: auto::Builder<TokioExecutor>,
}

impl Http {
    fn new(idle_timeout: Duration) -> Http {
        let mut either = auto::Builder::new(TokioExecutor::new());
        // hyper's header read timer runs from the moment a connection waits for a request head,
        // so it bounds an idle keep-alive connection and a client that sends its head slowly
        // alike. Half-closed clients (write side shut after the request) still get their reply.
        either
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(idle_timeout)
            .max_buf_size(limits::REQUEST_HEAD_BYTES_MAX)
            .keep_alive(true)
            .half_close(true);
        // HTTP/2 has no such timer in hyper: `idle` below closes idle HTTP/2 connections.
        either
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits::HTTP2_STREAMS_OPEN_MAX);
        Http { http1: either.clone().http1_only(), http2: either.clone().http2_only(), either }
    }
}

/// How one accepted connection is to be served.
enum Connection {
    /// HTTP over the socket itself: HTTP/1.1, or either version if `http2`.
    Cleartext { http2: bool },
    /// A TLS handshake first.
    Tls(tokio_rustls::TlsAcceptor),
}

/// Serves one connection until it closes, the server stops, or it has been idle for
/// `idle_timeout`.
async fn serve_connection(
    tcp: Arc<TcpStream>,
    connection: Connection,
    http: &Http,
    app: Router,
    stop: &CancellationToken,
    idle_timeout: Duration,
) {
    let service = PeerService { app, peer: Peer::new(tcp.clone()), activity: Arc::default() };
    let io = SharedTcp(tcp.clone());
    match connection {
        Connection::Cleartext { http2 } => {
            let builder = if http2 { &http.either } else { &http.http1 };
            drive(builder, TokioIo::new(io), service, stop, idle_timeout).await;
        }
        Connection::Tls(acceptor) => {
            // The handshake is bounded like the wait for a request head: a client that opens a
            // socket and sends nothing holds a slot no longer than an idle one.
            let handshake = tokio::time::timeout(idle_timeout, acceptor.accept(io));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    // Untrusted or missing client certificates end here (mutual TLS).
                    Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!("TLS handshake timed out"),
                },
                () = stop.cancelled() => return,
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let builder = if h2 { &http.http2 } else { &http.http1 };
            drive(builder, TokioIo::new(stream), service, stop, idle_timeout).await;
        }
    }
    if !stop.is_cancelled() {
        linger(&tcp).await;
    }
}

/// How long a closed connection goes on reading what its client still sends, and how much.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A lingering close, as web servers do, for a client still sending when its connection ends
/// (the rest of a body refused unread, with a 413): the reply is out and the write half shut,
/// and what the client sends is read and dropped until it closes its side, for at most
/// [`LINGER`]. Closing a socket with unread bytes in it sends a reset, and the client, still
/// writing its body, fails with a broken pipe instead of reading the reply. A connection with
/// nothing unread (an idle one, a client that closed) closes at once.
async fn linger(tcp: &TcpStream) {
    let mut buf = [0u8; 8192];
    if !matches!(tcp.try_read(&mut buf), Ok(n) if n > 0) {
        return;
    }
    let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut left = LINGER_BYTES_MAX;
    while left > 0 {
        match tokio::time::timeout_at(deadline, tcp.readable()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
        match tcp.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => left = left.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Runs hyper's connection; on shutdown or when idle, asks it to close after the requests in
/// flight and waits for that.
async fn drive<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: PeerService,
    stop: &CancellationToken,
    idle_timeout: Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = service.activity.clone();
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let idled = tokio::select! {
        ended = connection.as_mut() => return log_end(ended),
        () = stop.cancelled() => false,
        () = idle(&activity, idle_timeout) => true,
    };
    connection.as_mut().graceful_shutdown();
    if !idled {
        // Shutdown: `serve`'s drain bounds the requests in flight.
        return log_end(connection.await);
    }
    // An HTTP/2 close waits for the client to answer a ping; one that never does is dropped.
    match tokio::time::timeout(idle_timeout, connection).await {
        Ok(ended) => log_end(ended),
        Err(_) => tracing::debug!("idle connection did not close in time; dropped"),
    }
}

fn log_end(ended: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Requests started and ended on one connection, for [`idle`].
#[derive(Default)]
struct Activity {
    /// Requests begun or finished: unchanged over a window means nothing happened in it.
    events: AtomicU64,
    in_flight: AtomicU64,
}

/// A request in flight on a connection; it ends when dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Busy {
        activity.events.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// Resolves once a whole `idle_timeout` has passed with no request in flight and none begun or
/// finished: between one and two timeouts after the last reply. hyper times out idle HTTP/1
/// connections itself (sooner); this is what closes idle HTTP/2 ones, which hyper never does.
async fn idle(activity: &Activity, idle_timeout: Duration) {
    loop {
        let before = activity.events.load(Ordering::Relaxed);
        tokio::time::sleep(idle_timeout).await;
        let quiet = activity.events.load(Ordering::Relaxed) == before;
        if quiet && activity.in_flight.load(Ordering::Relaxed) == 0 {
            return;
        }
    }
}

const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The reply to a connection past the cap, written without waiting: a fresh socket's send buffer
/// takes it whole, and a client that is not reading loses nothing it was promised.
fn refuse(tcp: TcpStream) {
    const BODY: &str = r#"{"error":{"code":"limit_exceeded","message":"limit CONNECTIONS_OPEN_MAX reached; retry with backoff"}}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tcp.try_write(reply.as_bytes());
}

/// The router, per connection: every request carries the connection's [`Peer`], and counts as
/// activity for [`idle`].
#[derive(Clone)]
struct PeerService {
    app: Router,
    peer: Peer,
    activity: Arc<Activity>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for PeerService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let mut req: Request = req.map(Body::new);
        req.extensions_mut().insert(self.peer.clone());
        let reply = tower::ServiceExt::oneshot(self.app.clone(), req);
        let busy = Busy::start(&self.activity);
        Box::pin(async move {
            let _busy = busy;
            reply.await
        })
    }
}

/// The socket a request came on, in its extensions: a long poll whose client closed its side
/// is abandoned (see `overload::Overload::long_poll`), so that no job is leased to a client that
/// is gone; and requests are counted per remote address.
#[derive(Clone)]
pub(crate) struct Peer {
    tcp: Arc<TcpStream>,
    addr: Option<IpAddr>,
}

impl Peer {
    fn new(tcp: Arc<TcpStream>) -> Peer {
        let addr = tcp.peer_addr().ok().map(|a| a.ip());
        Peer { tcp, addr }
    }

    /// The client's address (`None` if the socket could not tell).
    pub(crate) fn addr(&self) -> Option<IpAddr> {
        self.addr
    }

    /// Resolves when the client has closed its side; see [`read_closed`].
    pub(crate) async fn closed(&self) {
        read_closed(&self.tcp).await
    }
}

/// Resolves when the client has closed its side (end of stream, nothing left unread) or the
/// socket failed; stays pending if the client sends more (a pipelined request, or on HTTP/2 any
/// frame: a cancelled HTTP/2 request is a stream reset, on which hyper drops the request itself).
///
/// On TLS this peeks below the encryption, so it sees a client that went away without closing
/// TLS (a dropped connection, a killed process); one that sends `close_notify` first leaves
/// unread bytes and is not noticed until the reply fails.
async fn read_closed(peer: &TcpStream) {
    let mut byte = [0u8; 1];
    match peer.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// A `TcpStream` shared between hyper (reads and writes) and [`read_closed`] (peeks). Reads go
/// through `try_read_buf`, straight into the unfilled part of hyper's buffer: zeroing it first
/// (what `try_read` needs) cost every request a memset of the whole spare buffer, 8% of the
/// server's instructions at one job per request.
struct SharedTcp(Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read_buf(buf) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::open_max_for;
    use redrive_core::limits::{CONNECTIONS_OPEN_MAX, CONNECTIONS_OPEN_MIN};

    #[test]
    fn the_connection_cap_leaves_descriptors_to_the_store() {
        assert_eq!(open_max_for(Some(1024)), 512);
        assert_eq!(open_max_for(Some(400)), 400 - 256);
        assert_eq!(open_max_for(Some(100)), CONNECTIONS_OPEN_MIN);
        assert_eq!(open_max_for(Some(1 << 20)), CONNECTIONS_OPEN_MAX);
        assert_eq!(open_max_for(None), CONNECTIONS_OPEN_MAX);
    }
}
