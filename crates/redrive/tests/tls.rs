//! TLS and mutual TLS end to end: `redrive serve` with certificates made per test (rcgen), and
//! the Rust SDK, the CLI and the official SQS SDK as clients. A client trusts the server only
//! through the CA it is given; with `--tls-client-ca`, a client without a certificate from that
//! CA is refused at the handshake; SIGHUP serves a new pair to new connections and keeps the old
//! one when the new pair is bad.

mod certs;
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use redrive_client::Client;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use certs::Ca;
use common::BIN;

/// Longer than any step may take; a test that reaches it has hung.
const HANG: Duration = Duration::from_secs(10);

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `redrive <args> --json queue list` against `url` with `env` set.
fn cli(url: &str, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    for k in ["REDRIVE_CA_FILE", "REDRIVE_CLIENT_CERT", "REDRIVE_CLIENT_KEY"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(["--url", url]).args(args).args(["--json", "queue", "list"]).output().unwrap()
}

#[tokio::test]
async fn a_client_trusts_the_server_through_the_ca_it_is_given_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let other = Ca::new(dir.path(), "other-ca");
    let (cert, key, _) = ca.issue_files(dir.path(), "server", false);
    let server = common::start(
        &dir.path().join("data"),
        &["--tls-cert", arg(&cert), "--tls-key", arg(&key)],
    );
    let url = server.url.clone();
    assert!(url.starts_with("https://"), "{url}");

    let client = Client::builder(&url).ca_file(&ca.file).build().unwrap();
    client.put_queue("tls", &Default::default()).await.unwrap();
    assert_eq!(client.list_queues().await.unwrap()[0].name, "tls");

    // Without the CA (public roots only), or with another CA: the certificate is not trusted.
    for client in
        [Client::new(&url).unwrap(), Client::builder(&url).ca_file(&other.file).build().unwrap()]
    {
        let e = client.list_queues().await.unwrap_err();
        assert!(matches!(e, redrive_client::Error::Transport(_)), "{e:?}");
        assert!(e.to_string().contains("certificate"), "{e}");
    }
    // Plain HTTP on the TLS port gets no answer.
    let plain = Client::new(&url.replace("https://", "http://")).unwrap();
    assert!(plain.list_queues().await.is_err());

    // The CLI: by flag or by environment, and refused without.
    let flag = cli(&url, &[], &["--ca-file", arg(&ca.file)]);
    assert!(flag.status.success(), "{}", String::from_utf8_lossy(&flag.stderr));
    assert!(String::from_utf8_lossy(&flag.stdout).contains("\"tls\""));
    let env = cli(&url, &[("REDRIVE_CA_FILE", &ca.file)], &[]);
    assert!(env.status.success(), "{}", String::from_utf8_lossy(&env.stderr));
    let none = cli(&url, &[], &[]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("certificate"));
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_a_certificate_it_signed_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let workers = Ca::new(dir.path(), "workers-ca");
    let strangers = Ca::new(dir.path(), "strangers-ca");
    let (cert, key, _) = ca.issue_files(dir.path(), "server", false);
    let (worker_cert, worker_key, _) = workers.issue_files(dir.path(), "worker", true);
    let (stranger_cert, stranger_key, _) = strangers.issue_files(dir.path(), "stranger", true);
    let args =
        ["--tls-cert", arg(&cert), "--tls-key", arg(&key), "--tls-client-ca", arg(&workers.file)];
    let server = common::start(&dir.path().join("data"), &args);
    let url = server.url.clone();

    let worker =
        Client::builder(&url).ca_file(&ca.file).client_cert_files(&worker_cert, &worker_key);
    let worker = worker.build().unwrap();
    worker.put_queue("mtls", &Default::default()).await.unwrap();
    assert_eq!(worker.list_queues().await.unwrap()[0].name, "mtls");

    let anonymous = Client::builder(&url).ca_file(&ca.file).build().unwrap();
    let stranger =
        Client::builder(&url).ca_file(&ca.file).client_cert_files(&stranger_cert, &stranger_key);
    for refused in [anonymous, stranger.build().unwrap()] {
        let e = refused.list_queues().await.unwrap_err();
        assert!(matches!(e, redrive_client::Error::Transport(_)), "{e:?}");
    }

    // The CLI, with the certificate from the environment.
    let env = [
        ("REDRIVE_CA_FILE", ca.file.as_path()),
        ("REDRIVE_CLIENT_CERT", &worker_cert),
        ("REDRIVE_CLIENT_KEY", &worker_key),
    ];
    let ok = cli(&url, &env, &[]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\"mtls\""));
    let refused = cli(&url, &env[..1], &[]);
    assert!(!refused.status.success());
    let half = cli(&url, &env[..2], &[]);
    assert!(String::from_utf8_lossy(&half.stderr).contains("--client-key"), "{half:?}");

    // A key that is not the certificate's is refused before any call.
    let mismatched = Client::builder(&url).client_cert_files(&worker_cert, &stranger_key).build();
    assert!(matches!(mismatched, Err(redrive_client::Error::Tls(_))), "{mismatched:?}");
}

/// The certificate the server at `addr` presents to a new connection, verified against `ca`.
async fn served_certificate(addr: &str, ca: &Path) -> Vec<u8> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).unwrap()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn hangup(server: &common::Server) {
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
}

#[tokio::test]
async fn sighup_serves_a_new_pair_to_new_connections_and_keeps_the_old_one_if_the_new_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key, first) = ca.issue_files(dir.path(), "server", false);
    // The files named in the configuration file, as an operator would.
    let config = dir.path().join("redrive.toml");
    let toml = format!("tls_cert = {:?}\ntls_key = {:?}\n", arg(&cert), arg(&key));
    std::fs::write(&config, toml).unwrap();
    let mut server = common::start(&dir.path().join("data"), &["--config", arg(&config)]);
    let addr = server.url.strip_prefix("https://").unwrap().to_owned();
    assert_eq!(served_certificate(&addr, &ca.file).await, first);
    let client = Client::builder(&server.url).ca_file(&ca.file).build().unwrap();
    client.list_queues().await.unwrap();

    // Warnings and errors the server logs, a line at a time.
    let (lines, logged) = mpsc::channel();
    let stderr = BufReader::new(server.child.stderr.take().unwrap());
    std::thread::spawn(move || {
        stderr.lines().map_while(Result::ok).try_for_each(|l| lines.send(l))
    });

    // Half a rotation: the new certificate is in place, its key is not yet.
    let (new_cert, new_key, second) = ca.issue(false);
    std::fs::write(&cert, &new_cert).unwrap();
    hangup(&server);
    let deadline = Instant::now() + HANG;
    loop {
        let line =
            logged.recv_timeout(deadline - Instant::now()).expect("the reload failure is logged");
        if line.contains("TLS reload failed") {
            break;
        }
    }
    assert_eq!(served_certificate(&addr, &ca.file).await, first, "the old pair is still served");
    client.list_queues().await.unwrap();

    // The key too: new connections get the new certificate.
    std::fs::write(&key, &new_key).unwrap();
    hangup(&server);
    let deadline = Instant::now() + HANG;
    while served_certificate(&addr, &ca.file).await != second {
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = Client::builder(&server.url).ca_file(&ca.file).build().unwrap();
    fresh.list_queues().await.unwrap();
    assert!(server.child.try_wait().unwrap().is_none(), "the server is still running");
}

#[tokio::test]
async fn the_sqs_sdk_works_over_tls_with_a_private_ca() {
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key, _) = ca.issue_files(dir.path(), "server", false);
    let server = common::start(
        &dir.path().join("data"),
        &["--tls-cert", arg(&cert), "--tls-key", arg(&key)],
    );
    let roots = tls::TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(std::fs::read(&ca.file).unwrap());
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls::TlsContext::builder().with_trust_store(roots).build().unwrap())
        .build_https();
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&server.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .http_client(http)
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(conf);
    let queue = sqs.create_queue().queue_name("over-tls").send().await.unwrap();
    let url = queue.queue_url.unwrap();
    sqs.send_message().queue_url(&url).message_body("hello").send().await.unwrap();
    let got = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert_eq!(got.messages.unwrap()[0].body.as_deref(), Some("hello"));
}

#[test]
fn tls_settings_that_cannot_work_stop_startup_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key, _) = ca.issue_files(dir.path(), "server", false);
    let (_, other_key, _) = ca.issue_files(dir.path(), "other", false);
    let data = dir.path().join("data");
    let cases: [(&[&str], &str); 4] = [
        (&["--tls-cert", arg(&cert)], "tls_cert and tls_key go together"),
        (&["--tls-cert", arg(&cert), "--tls-key", arg(&other_key)], "certificate and private key"),
        (
            &["--tls-cert", arg(&cert), "--tls-key", arg(&key), "--http2-cleartext"],
            "http2_cleartext",
        ),
        (&["--tls-cert", arg(&cert), "--tls-key", "/nonexistent.key"], "/nonexistent.key"),
    ];
    for (args, reason) in cases {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", arg(&data)])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(reason), "{args:?}: {stderr}");
    }
}
