//! Which HTTP versions each transport speaks, and the bounds on connections that never get to a
//! request: cleartext is HTTP/1.1 unless h2c is asked for, TLS negotiates h2 or HTTP/1.1 by
//! ALPN, an idle HTTP/2 connection and a TLS client that never says hello are closed after the
//! idle timeout. Certificates are made per test (rcgen); limits are shrunk so each test takes a
//! second.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redrive_core::time::{Clock, SystemClock};
use redrive_engine::{Durability, Engine, MemStorage, Store};
use redrive_server::sqs::SqsSettings;
use redrive_server::tls::{Tls, TlsFiles};
use redrive_server::{AppState, ConnLimits, Listener, Transport};
use reqwest::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const IDLE: Duration = Duration::from_millis(400);
/// Longer than any step may take; a test that reaches it has hung.
const HANG: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<()>,
}

impl Server {
    async fn start(transport: Transport) -> Server {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = Store::open(Box::new(MemStorage::new()), Durability::Sync, clock.now_ms());
        let engine = Engine::start(store.unwrap(), clock);
        let state = Arc::new(AppState::new(engine.handle.clone(), SqsSettings::default()));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = ConnLimits { open_max: 16, idle_timeout: IDLE };
        let done = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let listener = Listener { tcp, transport };
            redrive_server::serve_with(listener, state, shutdown, Duration::from_secs(2), limits)
                .await
                .unwrap();
            engine.shutdown().await;
        });
        Server { addr, stop: Some(stop), done }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(HANG, self.done).await.expect("serve returned").unwrap();
    }
}

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1, written to `dir`.
/// Returns the server's files and the CA's certificate (PEM).
fn pki(dir: &Path) -> (TlsFiles, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let cert = rcgen::CertificateParams::new(names).unwrap().signed_by(&key, &ca).unwrap();
    let files =
        TlsFiles { cert: dir.join("server.pem"), key: dir.join("server.key"), client_ca: None };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    (files, ca.pem())
}

async fn health(client: &reqwest::Client, url: &str) -> Result<Version, reqwest::Error> {
    let reply = client.get(format!("{url}/healthz")).send().await?;
    assert!(reply.status().is_success(), "{reply:?}");
    Ok(reply.version())
}

fn prior_knowledge() -> reqwest::Client {
    reqwest::Client::builder().http2_prior_knowledge().build().unwrap()
}

#[tokio::test]
async fn cleartext_is_http1_only_unless_h2c_is_asked_for() {
    let s = Server::start(Transport::Cleartext { http2: false }).await;
    let url = format!("http://{}", s.addr);
    assert_eq!(health(&reqwest::Client::new(), &url).await.unwrap(), Version::HTTP_11);
    let refused = health(&prior_knowledge(), &url).await;
    assert!(refused.is_err(), "h2c was served without being asked for: {refused:?}");
    s.stop().await;

    let s = Server::start(Transport::Cleartext { http2: true }).await;
    let url = format!("http://{}", s.addr);
    assert_eq!(health(&prior_knowledge(), &url).await.unwrap(), Version::HTTP_2);
    assert_eq!(health(&reqwest::Client::new(), &url).await.unwrap(), Version::HTTP_11);
    s.stop().await;
}

#[tokio::test]
async fn tls_negotiates_http2_or_http1_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let (files, ca) = pki(dir.path());
    let s = Server::start(Transport::Tls(Tls::load(files).unwrap())).await;
    let url = format!("https://localhost:{}", s.addr.port());
    let ca = reqwest::Certificate::from_pem(ca.as_bytes()).unwrap();
    let h2 = reqwest::Client::builder().add_root_certificate(ca.clone()).build().unwrap();
    assert_eq!(health(&h2, &url).await.unwrap(), Version::HTTP_2);
    let h1 = reqwest::Client::builder().add_root_certificate(ca).http1_only().build().unwrap();
    assert_eq!(health(&h1, &url).await.unwrap(), Version::HTTP_11);
    // Cleartext on the TLS port gets no HTTP answer.
    let plain = health(&reqwest::Client::new(), &format!("http://{}", s.addr)).await;
    assert!(plain.is_err(), "{plain:?}");
    s.stop().await;
}

/// Reads until the server closes; returns how long that took.
async fn time_to_close(tcp: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(HANG, tcp.read_to_end(&mut sink))
        .await
        .expect("the server closed the connection")
        .ok();
    started.elapsed()
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let s = Server::start(Transport::Cleartext { http2: true }).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    // The client preface and an empty SETTINGS frame, then nothing: not even the acks a closing
    // HTTP/2 server waits for.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // Idle for one to two timeouts, then one more for the close the client never acknowledges.
    let idle = time_to_close(&mut tcp).await;
    assert!(idle >= IDLE && idle < IDLE * 4, "{idle:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_never_starts_its_tls_handshake_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = pki(dir.path());
    let s = Server::start(Transport::Tls(Tls::load(files).unwrap())).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let idle = time_to_close(&mut tcp).await;
    assert!(idle >= IDLE - Duration::from_millis(50) && idle < IDLE * 3, "{idle:?}");
    s.stop().await;
}
