//! Connections over real sockets: the cap on open connections, the idle timeout, half-closed
//! clients, a client still sending a body refused unread, and shutdown with connections open.
//! Limits are shrunk so each test takes a second.

use std::sync::Arc;
use std::time::Duration;

use redrive_core::time::{Clock, SystemClock};
use redrive_engine::{Durability, Engine, MemStorage, Store};
use redrive_server::sqs::SqsSettings;
use redrive_server::{AppState, ConnLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const IDLE: Duration = Duration::from_millis(400);
/// Longer than any step may take; a test that reaches it has hung.
const HANG: Duration = Duration::from_secs(5);

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<()>,
}

async fn start(open_max: usize) -> Server {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let storage = Box::new(MemStorage::new());
    let store = Store::open(storage, Durability::Sync, clock.now_ms()).unwrap();
    let engine = Engine::start(store, clock);
    let state = Arc::new(AppState::new(engine.handle.clone(), SqsSettings::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = ConnLimits { open_max, idle_timeout: IDLE };
    let done = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        redrive_server::serve_with(listener, state, shutdown, Duration::from_secs(2), limits)
            .await
            .unwrap();
        engine.shutdown().await;
    });
    Server { addr, stop: Some(stop), done }
}

/// Sends `request` and reads until the server closes; `None` if the connection failed.
async fn exchange(addr: std::net::SocketAddr, request: &str) -> Option<String> {
    let go = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        tcp.write_all(request.as_bytes()).await.ok()?;
        let mut reply = Vec::new();
        tcp.read_to_end(&mut reply).await.ok()?;
        Some(String::from_utf8_lossy(&reply).into_owned())
    };
    tokio::time::timeout(HANG, go).await.expect("the server answered or closed in time")
}

const HEALTH: &str = "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

/// Reads until end of stream; returns how long that took.
async fn time_to_close(tcp: &mut TcpStream) -> Duration {
    let t = std::time::Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(HANG, tcp.read_to_end(&mut sink))
        .await
        .expect("the server closed the idle connection")
        .ok();
    t.elapsed()
}

#[tokio::test]
async fn past_the_cap_a_client_is_refused_at_once_and_served_once_idlers_time_out() {
    let s = start(4).await;
    let mut idlers = Vec::new();
    for _ in 0..8 {
        idlers.push(TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The four idlers past the cap were refused already; this one is too, with a reason (unless
    // the reset beat the reply: refused all the same, and at once).
    if let Some(reply) = exchange(s.addr, HEALTH).await {
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        let body = &reply[reply.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "limit_exceeded", "{v}");
    }
    for tcp in &mut idlers {
        assert!(time_to_close(tcp).await < IDLE * 3);
    }
    let reply = exchange(s.addr, HEALTH).await.expect("served");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    stop(s).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = start(16).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle = time_to_close(&mut tcp).await;
    assert!(idle >= IDLE - Duration::from_millis(50) && idle < IDLE * 3, "{idle:?}");
    stop(s).await;
}

#[tokio::test]
async fn a_client_that_sends_its_head_slowly_is_cut_off() {
    let s = start(16).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..10 {
        tokio::time::sleep(IDLE / 4).await;
        if tcp.write_all(b"x-slow: 1\r\n").await.is_err() {
            break;
        }
    }
    time_to_close(&mut tcp).await;
    assert!(started.elapsed() < IDLE * 4);
    stop(s).await;
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_reply() {
    let s = start(16).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let body = r#"{"visibility_timeout_ms": 5000}"#;
    let request = format!(
        "PUT /v1/queues/half HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(HANG, tcp.read_to_end(&mut reply)).await.unwrap().unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    assert!(reply.contains(r#""visibility_timeout_ms":5000"#), "{reply}");
    stop(s).await;
}

#[tokio::test]
async fn shutdown_with_idle_connections_open_returns_without_waiting_for_them() {
    let s = start(16).await;
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let _ = idle.read(&mut buf).await.unwrap();
    let started = std::time::Instant::now();
    stop(s).await;
    assert!(started.elapsed() < IDLE, "{:?}", started.elapsed());
}

async fn stop(mut s: Server) {
    let _ = s.stop.take().unwrap().send(());
    tokio::time::timeout(HANG, s.done).await.expect("serve returned").unwrap();
}

#[tokio::test]
async fn shutdown_answers_the_requests_in_flight() {
    let s = start(16).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let create = "PUT /v1/queues/drain HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
    tcp.write_all(create.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 201"), "{}", String::from_utf8_lossy(&buf[..n]));
    let body = r#"{"wait_ms": 20000}"#;
    let poll = format!(
        "POST /v1/queues/drain/receive HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(poll.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    stop(s).await;
    let mut reply = Vec::new();
    tokio::time::timeout(HANG, tcp.read_to_end(&mut reply)).await.unwrap().unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200") && reply.contains(r#"{"jobs":[]}"#), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(2), "the long poll was released, not waited");
}

/// A request head far past `REQUEST_HEAD_BYTES_MAX` is refused (431) and the connection
/// closed, instead of being buffered whole.
#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let s = start(16).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let big = "a".repeat(redrive_core::limits::REQUEST_HEAD_BYTES_MAX * 4);
    let head = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-filler: {big}\r\n\r\n");
    // The server may close before it has read all of it.
    let _ = tcp.write_all(head.as_bytes()).await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(HANG, tcp.read_to_end(&mut reply)).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    stop(s).await;
}

#[tokio::test]
async fn a_client_still_sending_a_body_refused_for_its_size_reads_the_413() {
    let s = start(16).await;
    let body = redrive_core::limits::REQUEST_BODY_MAX_BYTES + 1024 * 1024;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /v1/queues/q/jobs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {body}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 1024 * 1024];
    tcp.write_all(&chunk).await.unwrap();
    // The server has answered and ended the connection by now; a close with the client's bytes
    // unread would reset it, and the rest of the body could not be sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let go = async {
        for _ in 1..body / chunk.len() {
            tcp.write_all(&chunk).await.expect("the rest of the body is taken");
        }
        tcp.write_all(&chunk[..body % chunk.len()]).await.expect("the body's tail is taken");
        let mut reply = Vec::new();
        tcp.read_to_end(&mut reply).await.expect("the reply is read");
        String::from_utf8_lossy(&reply).into_owned()
    };
    let reply = tokio::time::timeout(HANG, go).await.expect("in time");
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("request_too_large"), "{reply}");
    drop(tcp);
    stop(s).await;
}
