//! Connections: the accept loop, the cap on open connections, the idle timeout, half-closed
//! clients and graceful shutdown. One hyper HTTP/1 connection per socket serves the router.
//!
//! Why our own loop and not `axum::serve`: that one has no cap and no idle timeout, so idle sockets
//! could use up the process's file descriptors until the WAL could not open its next segment
//! (EMFILE poisons the store).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use redrive_core::{limits, Error};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::error::ApiError;

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
    listener: TcpListener,
    app: Router,
    conn: ConnLimits,
    shutdown: impl Future<Output = ()>,
    on_stop: impl Future<Output = ()>,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(conn.open_max));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // hyper's header read timer runs from the moment a connection waits for a request head, so
    // it bounds an idle keep-alive connection and a client that sends its head slowly alike.
    // Half-closed clients (write side shut after the request) still get their reply.
    http.timer(TokioTimer::new())
        .header_read_timeout(conn.idle_timeout)
        .keep_alive(true)
        .half_close(true);
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
            refuse(tcp);
            continue;
        };
        at_cap = false;
        // Small replies must not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let tcp = Arc::new(tcp);
        let service = PeerService { app: app.clone(), peer: tcp.clone() };
        let connection = http.serve_connection(TokioIo::new(SharedTcp(tcp)), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    on_stop.await;
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            drain_ms = drain.as_millis() as u64,
            "in-flight requests did not finish in time"
        );
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

/// The router, per connection, knowing its socket: a long poll whose client closed its side is
/// abandoned, so that no job is leased to a client that is gone.
#[derive(Clone)]
struct PeerService {
    app: Router,
    peer: Arc<TcpStream>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for PeerService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let req: Request = req.map(Body::new);
        let waits = may_wait(&req);
        let reply = tower::ServiceExt::oneshot(self.app.clone(), req);
        if !waits {
            return Box::pin(reply);
        }
        let peer = self.peer.clone();
        Box::pin(async move {
            tokio::select! {
                r = reply => r,
                () = read_closed(&peer) => {
                    tracing::debug!("client closed during a long poll; abandoning it");
                    Ok(ApiError(Error::ShuttingDown).into_response())
                }
            }
        })
    }
}

/// Whether the request may be a long poll: a native receive, or an SQS `ReceiveMessage` named
/// in a header or the query string (one named only in a form body is not seen here).
///
/// Only these race the client's end-of-stream: a client that half-closed after sending cannot
/// be told from one that went away, and every other request runs to its reply (the reply a
/// half-closed client waits for), while a long poll would lease a job to nobody and hide it for a
/// whole lease.
fn may_wait(req: &Request) -> bool {
    let path = req.uri().path();
    if path == "/v1/receive" || (path.starts_with("/v1/queues/") && path.ends_with("/receive")) {
        return true;
    }
    let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok());
    target.is_some_and(|t| t.ends_with(".ReceiveMessage"))
        || req.uri().query().is_some_and(|q| q.contains("Action=ReceiveMessage"))
}

/// Resolves when the client has closed its side (end of stream, nothing left unread) or the
/// socket failed; stays pending if the client sends more (a pipelined request).
async fn read_closed(peer: &TcpStream) {
    let mut byte = [0u8; 1];
    match peer.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// A `TcpStream` shared between hyper (reads and writes) and [`read_closed`] (peeks). Reads go
/// through `try_read`, which needs initialized memory (this crate has no `unsafe`): the unfilled
/// part of hyper's buffer is zeroed per read, at most one read's worth (8 KiB at first).
struct SharedTcp(Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
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
