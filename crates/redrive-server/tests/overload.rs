//! Floods of slow or abandoned requests over real sockets: dropped long polls give back their
//! caller's share at once, one caller's long polls are capped, and slow uploads neither starve
//! other requests nor outlast the body read deadline. Limits are shrunk so each test takes a
//! second; waits poll `/metrics` for the server's own counts rather than sleep.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use redrive_core::time::{Clock, SystemClock};
use redrive_engine::{Durability, Engine, MemStorage, Store};
use redrive_server::sqs::SqsSettings;
use redrive_server::{AppState, ConnLimits, Overload, OverloadLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longer than any step may take; a test that reaches it has hung. Well under the 20 s the
/// abandoned long polls asked to wait.
const HANG: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<()>,
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.done.await.unwrap();
    }
}

async fn start(overload: OverloadLimits) -> Server {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(Box::new(MemStorage::new()), Durability::Sync, clock.now_ms()).unwrap();
    let engine = Engine::start(store, clock);
    let mut state = AppState::new(engine.handle.clone(), SqsSettings::default());
    state.overload = Overload::new(overload);
    let state = Arc::new(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = ConnLimits { open_max: 64, idle_timeout: Duration::from_secs(5) };
    let done = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        redrive_server::serve_with(listener, state, shutdown, Duration::from_secs(2), limits)
            .await
            .unwrap();
        engine.shutdown().await;
    });
    let s = Server { addr, stop: Some(stop), done };
    let created = exchange(&s, &request("PUT", "/v1/queues/q", "{}")).await;
    assert!(created.starts_with("HTTP/1.1 20"), "{created}");
    s
}

/// A request that asks the server to close after replying.
fn request(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A Query-protocol ReceiveMessage, its action named only in the form body.
fn sqs_receive(wait_s: u32) -> String {
    let body = format!(
        "Action=ReceiveMessage&QueueUrl=http%3A%2F%2Fx%2F000000000000%2Fq&WaitTimeSeconds={wait_s}"
    );
    format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n\
         authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Connects from `from` (any address on the loopback network) and sends `request`.
async fn send_from(s: &Server, from: IpAddr, request: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut tcp = socket.connect(s.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp
}

async fn send(s: &Server, request: &str) -> TcpStream {
    send_from(s, [127, 0, 0, 1].into(), request).await
}

/// Reads the reply until the server closes.
async fn reply(mut tcp: TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(HANG, tcp.read_to_end(&mut out))
        .await
        .expect("the server answered in time")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

async fn exchange(s: &Server, request: &str) -> String {
    reply(send(s, request).await).await
}

/// Waits until the `/metrics` gauge `name` reads `want`.
async fn gauge_reaches(s: &Server, name: &str, want: u64) {
    let wait = async {
        loop {
            let page = exchange(s, &request("GET", "/metrics", "")).await;
            let line = page.lines().find(|l| l.starts_with(&format!("{name} ")));
            let value = line.and_then(|l| l.split(' ').nth(1)).and_then(|v| v.parse::<f64>().ok());
            if value == Some(want as f64) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(HANG, wait)
        .await
        .unwrap_or_else(|_| panic!("{name} never reached {want}"));
}

fn long_polls(max: u32) -> OverloadLimits {
    OverloadLimits { long_polls_per_caller_max: max, ..OverloadLimits::default() }
}

#[tokio::test]
async fn dropped_native_long_polls_give_back_their_callers_share_at_once() {
    let s = start(long_polls(3)).await;
    let poll = request("POST", "/v1/queues/q/receive", r#"{"wait_ms": 20000}"#);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(send(&s, &poll).await);
    }
    gauge_reaches(&s, "redrive_long_polls_open", 3).await;
    let refused = exchange(&s, &request("POST", "/v1/receive", r#"{"queues": ["q"]}"#)).await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("LONG_POLLS_PER_CALLER_MAX"), "{refused}");
    // A receive that does not wait is no long poll, and is served.
    let at_once = exchange(&s, &request("POST", "/v1/queues/q/receive", r#"{"wait_ms": 0}"#)).await;
    assert!(at_once.starts_with("HTTP/1.1 200"), "{at_once}");

    drop(open);
    gauge_reaches(&s, "redrive_long_polls_open", 0).await;
    let again = exchange(&s, &request("POST", "/v1/queues/q/receive", r#"{"wait_ms": 50}"#)).await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    s.stop().await;
}

#[tokio::test]
async fn dropped_query_protocol_long_polls_give_back_their_callers_share_at_once() {
    let s = start(long_polls(2)).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(send(&s, &sqs_receive(20)).await);
    }
    gauge_reaches(&s, "redrive_long_polls_open", 2).await;
    let refused = exchange(&s, &sqs_receive(1)).await;
    assert!(refused.starts_with("HTTP/1.1 4"), "{refused}");
    assert!(refused.contains("OverLimit"), "{refused}");
    assert!(refused.contains("LONG_POLLS_PER_CALLER_MAX"), "{refused}");

    drop(open);
    gauge_reaches(&s, "redrive_long_polls_open", 0).await;
    let again = exchange(&s, &sqs_receive(1)).await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    s.stop().await;
}

#[tokio::test]
async fn slow_uploads_starve_no_one_and_are_cut_at_the_body_deadline() {
    let limits = OverloadLimits {
        in_flight_max: 8,
        in_flight_per_peer_max: 4,
        body_read_timeout: Duration::from_millis(500),
        ..OverloadLimits::default()
    };
    let s = start(limits).await;
    let slow_client: IpAddr = [127, 0, 0, 2].into();
    // A body that promises 1000 bytes and sends 10.
    let slow = "POST /v1/queues/q/jobs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 1000\r\n\r\n{\"jobs\": [";
    let mut uploads = Vec::new();
    for _ in 0..4 {
        uploads.push(send_from(&s, slow_client, slow).await);
    }
    // The four uploads, and the metrics request that reads the gauge.
    gauge_reaches(&s, "redrive_http_requests_in_flight", 5).await;

    // That client's share is taken; everyone else is served, on every route.
    let past_share = reply(send_from(&s, slow_client, slow).await).await;
    assert!(past_share.starts_with("HTTP/1.1 503"), "{past_share}");
    let job = request("POST", "/v1/queues/q/jobs", r#"{"jobs": [{"body": "x"}]}"#);
    let enqueued = exchange(&s, &job).await;
    assert!(enqueued.starts_with("HTTP/1.1 200"), "{enqueued}");
    let health = exchange(&s, &request("GET", "/healthz", "")).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    for upload in uploads {
        let cut = reply(upload).await;
        assert!(cut.starts_with("HTTP/1.1 400"), "{cut}");
        assert!(cut.contains("REQUEST_BODY_READ_TIMEOUT_MS"), "{cut}");
    }
    gauge_reaches(&s, "redrive_http_requests_in_flight", 1).await;
    s.stop().await;
}

#[tokio::test]
async fn health_answers_while_every_request_slot_is_taken() {
    let limits = OverloadLimits {
        in_flight_max: 2,
        in_flight_per_peer_max: 2,
        body_read_timeout: Duration::from_secs(20),
        ..OverloadLimits::default()
    };
    let s = start(limits).await;
    let slow = "POST /v1/queues/q/jobs HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{";
    let _uploads = [send(&s, slow).await, send(&s, slow).await];
    // Slots cannot be watched through /metrics when it needs one itself: the refusal is it.
    let refused = async {
        loop {
            let r = exchange(&s, &request("GET", "/v1/queues", "")).await;
            if r.starts_with("HTTP/1.1 503") {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let refused = tokio::time::timeout(HANG, refused).await.expect("the slots filled");
    assert!(refused.contains("overloaded"), "{refused}");
    for path in ["/healthz", "/readyz"] {
        let r = exchange(&s, &request("GET", path, "")).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r}");
    }
    s.stop().await;
}
