//! Authentication against a real `redrive serve --auth`: the refusal to serve a network address
//! without it, bearer tokens and scoped keys on the native API (made and revoked with the
//! `redrive keys` CLI), SigV4 with a key's id and secret through the official `aws-sdk-sqs`,
//! and the audit log of key changes.

mod common;
mod pg;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::Client;
use serde_json::{json, Value};

const ADMIN_ID: &str = "adminkey01";
const ADMIN_SECRET: &str = "s3cretAdminSecretForTests0123";

fn admin_token() -> String {
    format!("{ADMIN_ID}.{ADMIN_SECRET}")
}

/// `redrive serve` over `dir` with `args` (after `serve`) and the admin key in the environment.
fn serve(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
    Command::new(common::BIN)
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("REDRIVE_STORE")
        .env_remove("REDRIVE_AUTH")
        .env_remove("REDRIVE_LISTEN")
        .env_remove("REDRIVE_TOKEN")
        .env("REDRIVE_ADMIN_KEY_ID", ADMIN_ID)
        .env("REDRIVE_ADMIN_SECRET", ADMIN_SECRET)
        .env("REDRIVE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redrive starts")
}

/// Waits for the address line of a server that should start.
fn started(mut child: std::process::Child) -> common::Server {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let Some(url) = line.trim().strip_prefix("redrive listening on ") else {
        let _ = child.kill();
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        panic!("no address line from redrive serve: {line:?}; stderr: {err}");
    };
    // A server on 0.0.0.0 is reached on loopback.
    let url = url.replace("0.0.0.0", "127.0.0.1");
    common::Server { url, child }
}

fn auth_server(dir: &std::path::Path) -> common::Server {
    started(serve(dir, &["--listen", "127.0.0.1:0", "--auth"]))
}

/// `redrive ARGS --url URL --json` with `token` in `REDRIVE_TOKEN`; its JSON output.
fn cli(url: &str, token: &str, args: &[&str]) -> Value {
    let out = Command::new(common::BIN)
        .args(args)
        .args(["--url", url, "--json"])
        .env("REDRIVE_TOKEN", token)
        .env_remove("REDRIVE_URL")
        .output()
        .expect("redrive runs");
    assert!(
        out.status.success(),
        "redrive {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// A request with an optional bearer token; status and JSON body (`Null` if none).
async fn call(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A scoped key made with the CLI: `(id, secret, token)`.
fn worker_key(url: &str) -> (String, String, String) {
    let key = cli(
        url,
        &admin_token(),
        &["keys", "create", "worker", "--allow", "send:orders-*", "--allow", "receive:orders-*"],
    );
    let field = |k: &str| key[k].as_str().unwrap_or_else(|| panic!("{k} in {key}")).to_owned();
    let (id, secret, token) = (field("id"), field("secret"), field("token"));
    assert_eq!(token, format!("{id}.{secret}"));
    (id, secret, token)
}

fn sqs(url: &str, id: &str, secret: &str) -> Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(id, secret, None, None, "static"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(r: Result<T, E>) -> String {
    r.expect_err("the call should fail").code().unwrap_or("<none>").to_owned()
}

#[test]
fn a_network_address_needs_auth_or_the_insecure_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = serve(dir.path(), &["--listen", "0.0.0.0:0"]).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served on 0.0.0.0 without --auth; stderr: {err}");
    assert!(err.contains("--auth"), "the refusal names --auth: {err}");

    let dir = tempfile::tempdir().unwrap();
    let server = started(serve(dir.path(), &["--listen", "0.0.0.0:0", "--insecure-no-auth"]));
    assert!(server.url.starts_with("http://127.0.0.1:"), "{}", server.url);
}

#[tokio::test]
async fn bearer_tokens_scope_and_revoke_native_api_access() {
    let dir = tempfile::tempdir().unwrap();
    let server = auth_server(dir.path());
    let url = server.url.clone();
    let admin = admin_token();
    let get = reqwest::Method::GET;
    let put = reqwest::Method::PUT;
    let post = reqwest::Method::POST;

    let (status, body) = call(get.clone(), format!("{url}/v1/queues"), None, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let wrong = format!("{ADMIN_ID}.{}x", ADMIN_SECRET);
    let (status, body) = call(get.clone(), format!("{url}/v1/queues"), Some(&wrong), None).await;
    assert_eq!((status, &body["error"]["code"]), (401, &json!("unauthorized")), "{body}");
    let (status, body) = call(get.clone(), format!("{url}/v1/queues"), Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(get.clone(), format!("{url}/healthz"), None, None).await;
    assert_eq!(status, 200, "/healthz is open");

    for q in ["orders-1", "payments"] {
        let (status, body) =
            call(put.clone(), format!("{url}/v1/queues/{q}"), Some(&admin), Some(json!({}))).await;
        assert!(status == 200 || status == 201, "creating {q}: {status} {body}");
    }

    let (id, _, token) = worker_key(&url);
    let job = || Some(json!({"jobs": [{"body": "hello"}]}));
    let orders = format!("{url}/v1/queues/orders-1/jobs");
    let (status, body) = call(post.clone(), orders.clone(), Some(&token), job()).await;
    assert!(status == 200 || status == 201, "send to orders-1: {status} {body}");
    assert_eq!(body["jobs"].as_array().map(Vec::len), Some(1), "{body}");

    let payments = format!("{url}/v1/queues/payments/jobs");
    let (status, body) = call(post.clone(), payments, Some(&token), job()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    // Nor may the worker read or manage what it may only send to.
    let stats = |q: &str| format!("{url}/v1/queues/{q}/stats");
    let (status, body) = call(get.clone(), stats("orders-1"), Some(&token), None).await;
    assert_eq!(status, 403, "read is not granted: {body}");
    let (status, body) =
        call(put.clone(), format!("{url}/v1/queues/orders-2"), Some(&token), Some(json!({}))).await;
    assert_eq!(status, 403, "manage is not granted: {body}");

    let (status, body) = call(get.clone(), stats("payments"), Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totals"]["enqueued"], 0, "nothing was written to payments: {body}");
    let counts = body["counts"].as_object().expect("counts");
    assert!(counts.values().all(|v| v == 0), "payments holds no job: {body}");
    let (status, body) = call(get.clone(), stats("orders-1"), Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totals"]["enqueued"], 1, "the allowed send was written: {body}");

    let revoked = cli(&url, &admin, &["keys", "revoke", &id]);
    assert!(!revoked["revoked_at"].is_null(), "{revoked}");
    let (status, body) = call(post.clone(), orders, Some(&token), job()).await;
    assert_eq!(status, 401, "a revoked key is refused: {body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");

    let (status, body) = call(get.clone(), format!("{url}/v1/audit"), Some(&token), None).await;
    assert_eq!(status, 401, "{body}");
    let (status, log) = call(get, format!("{url}/v1/audit"), Some(&admin), None).await;
    assert_eq!(status, 200, "{log}");
    let entries = log["entries"].as_array().expect("audit entries");
    for action in ["key.create", "key.revoke"] {
        let e = entries
            .iter()
            .find(|e| e["action"] == action && e["target"] == id.as_str())
            .unwrap_or_else(|| panic!("no {action} of {id} in {log}"));
        assert_eq!(e["key"], ADMIN_ID, "{action} is recorded as the admin's: {e}");
        assert_eq!(e["from"], "127.0.0.1", "and where it came from: {e}");
    }
}

#[tokio::test]
async fn sigv4_with_a_keys_id_and_secret_is_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let server = auth_server(dir.path());
    let url = server.url.clone();
    let (status, body) = call(
        reqwest::Method::PUT,
        format!("{url}/v1/queues/orders-1"),
        Some(&admin_token()),
        Some(json!({})),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (id, secret, _) = worker_key(&url);
    let queue = format!("{url}/000000000000/orders-1");

    let worker = sqs(&url, &id, &secret);
    let sent = worker.send_message().queue_url(&queue).message_body("via sqs").send().await;
    assert!(sent.unwrap().message_id.is_some());
    let got = worker.receive_message().queue_url(&queue).max_number_of_messages(10).send().await;
    let bodies: Vec<_> =
        got.unwrap().messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect();
    assert_eq!(bodies, ["via sqs"]);

    let create = worker.create_queue().queue_name("orders-2").send().await;
    assert_eq!(code(create), "AccessDenied", "manage is not granted");
    let other = worker.send_message().queue_url(format!("{url}/000000000000/payments"));
    assert_eq!(code(other.message_body("x").send().await), "AccessDenied");

    let wrong = sqs(&url, &id, &format!("{secret}x"));
    let r = wrong.send_message().queue_url(&queue).message_body("no").send().await;
    assert_eq!(code(r), "SignatureDoesNotMatch");
    let unknown = sqs(&url, "RDKNOSUCHKEY000000000", &secret);
    let r = unknown.send_message().queue_url(&queue).message_body("no").send().await;
    assert_eq!(code(r), "InvalidClientTokenId");

    cli(&url, &admin_token(), &["keys", "revoke", &id]);
    let r = worker.send_message().queue_url(&queue).message_body("revoked").send().await;
    assert_eq!(code(r), "InvalidClientTokenId", "a revoked key is as good as unknown");

    // Only the one allowed message was written.
    let (status, body) = call(
        reqwest::Method::GET,
        format!("{url}/v1/queues/orders-1/stats"),
        Some(&admin_token()),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totals"]["enqueued"], 1, "{body}");
}

/// Two servers on one PostgreSQL database: a key made on one works on the other, and its
/// revocation on the first is refused by the second on its very next request. Neither server's
/// log, nor `/metrics`, nor any answer ever shows a secret.
#[tokio::test]
async fn a_revoked_key_is_refused_on_every_server_of_a_postgres_store() {
    let store = pg::fresh_database(&pg::server_url());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = ["--listen", "127.0.0.1:0", "--auth", "--store", store.as_str()];
    let a = started(serve(da.path(), &args));
    let mut b = started(serve(db.path(), &args));
    let admin = admin_token();
    let put = call(
        reqwest::Method::PUT,
        format!("{}/v1/queues/orders-1", a.url),
        Some(&admin),
        Some(json!({})),
    );
    assert_eq!(put.await.0, 201);
    let (id, secret, token) = worker_key(&a.url);
    let enqueue = || {
        let url = format!("{}/v1/queues/orders-1/jobs", b.url);
        call(reqwest::Method::POST, url, Some(&token), Some(json!({"jobs": [{"body": "x"}]})))
    };
    assert_eq!(enqueue().await.0, 200, "a key made on A works on B");
    cli(&a.url, &admin, &["keys", "revoke", &id]);
    let (status, v) = enqueue().await;
    assert_eq!((status, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");

    // Secrets appear nowhere a person or a scraper reads.
    let (_, metrics) = {
        let r = reqwest::Client::new().get(format!("{}/metrics", b.url)).bearer_auth(&admin);
        let r = r.send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    };
    let keys = call(reqwest::Method::GET, format!("{}/v1/keys", b.url), Some(&admin), None).await.1;
    let _ = call(
        reqwest::Method::GET,
        format!("{}/v1/queues", b.url),
        Some(&format!("{id}.{ADMIN_SECRET}")),
        None,
    )
    .await;
    b.child.kill().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut b.child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("redrive::audit") || log.contains("key"), "the log was captured: {log}");
    for (what, text) in [("log", &log), ("metrics", &metrics), ("key list", &keys.to_string())] {
        assert!(!text.contains(&secret), "the worker's secret in the {what}");
        assert!(!text.contains(ADMIN_SECRET), "the admin secret in the {what}");
    }
}

/// Secrets given in the environment (a database URL with its password, a webhook URL whose
/// path is its token) are never echoed by `--help`.
#[test]
fn help_never_shows_secrets_from_the_environment() {
    for args in [&["serve", "--help"][..], &["triage", "watch", "--help"][..]] {
        let out = Command::new(common::BIN)
            .args(args)
            .env("REDRIVE_STORE", "postgres://app:DBPASSWORD9@db.internal/redrive")
            .env("REDRIVE_TRIAGE_WEBHOOK", "https://hooks.example.com/services/T1/B2/HOOKTOKEN9")
            .output()
            .expect("redrive runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("Usage"), "{args:?}: {text}");
        assert!(!text.contains("DBPASSWORD9") && !text.contains("HOOKTOKEN9"), "{args:?}: {text}");
    }
}
