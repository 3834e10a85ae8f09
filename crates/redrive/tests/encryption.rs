//! Encryption at rest against a real `redrive serve --encryption-key-file`: job bodies,
//! attribute values and error texts never reach the disk (or the database) in clear, yet read
//! back as sent; keys rotate (several files, the first seals) and `redrive rekey` retires an
//! old one; a bad key file or a missing key is a clear error, not a panic.

mod pg;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

const BODY_SECRET: &str = "CUSTOMER-SECRET-7731";
const ATTR_SECRET: &str = "ATTRIBUTE-SECRET-4419";
const ERROR_SECRET: &str = "ERROR-SECRET-9902";
const DETAIL_SECRET: &str = "DETAIL-SECRET-5150";

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(dir: &Path, store: Option<&str>, keys: &[&Path]) -> Command {
    let mut cmd = Command::new(pg::BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir);
    if let Some(s) = store {
        cmd.args(["--store", s]);
    }
    for k in keys {
        cmd.arg("--encryption-key-file").arg(k);
    }
    cmd.env_remove("REDRIVE_STORE")
        .env_remove("REDRIVE_ENCRYPTION_KEY_FILES")
        .env("REDRIVE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn serve(dir: &Path, store: Option<&str>, keys: &[&Path]) -> Server {
    let mut child = command(dir, store, keys).spawn().expect("redrive starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let Some(url) = line.trim().strip_prefix("redrive listening on ") else {
        let _ = child.kill();
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        panic!("no address line from redrive serve: {line:?}; stderr: {err}");
    };
    Server { url: url.to_owned(), child }
}

fn key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, [byte; 32]).unwrap();
    p
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut r = http.request(method, &url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn ok(method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    let (status, v) = call(method, url.clone(), body).await;
    assert!((200..300).contains(&status), "{url}: {status} {v}");
    v
}

async fn enqueue(base: &str, body: &str) -> String {
    let jobs = json!({"jobs": [{"body": body, "attributes": {"customer": ATTR_SECRET}}]});
    let url = format!("{base}/v1/queues/work/jobs");
    let v = ok(reqwest::Method::POST, url, Some(jobs)).await;
    v["jobs"][0]["id"].as_str().unwrap().to_owned()
}

/// Makes the queue, enqueues a job with secrets in its body and an attribute, receives it
/// (checking the plaintext), and fails it with secrets in the message and detail.
async fn fill(base: &str) -> String {
    let q = json!({"max_attempts": 5, "backoff": {"base_ms": 1, "max_ms": 1}});
    ok(reqwest::Method::PUT, format!("{base}/v1/queues/work"), Some(q)).await;
    let id = enqueue(base, &format!("order for {BODY_SECRET}")).await;
    let url = format!("{base}/v1/queues/work/receive");
    let got = ok(reqwest::Method::POST, url, Some(json!({"max": 1}))).await;
    let d = &got["jobs"][0];
    assert_eq!(d["body"], format!("order for {BODY_SECRET}"));
    assert_eq!(d["attributes"]["customer"], ATTR_SECRET);
    let fail = json!({"receipt": d["receipt"], "retry_after_ms": 3_600_000,
        "error": {"type": "PaymentDeclined", "message": format!("card of {ERROR_SECRET}"),
                  "detail": format!("trace {DETAIL_SECRET}")}});
    ok(reqwest::Method::POST, format!("{base}/v1/fail"), Some(fail)).await;
    id
}

/// The job as the server shows it holds every secret in clear.
async fn check_plain(base: &str, id: &str) {
    let job = ok(reqwest::Method::GET, format!("{base}/v1/jobs/{id}"), None).await;
    assert_eq!(job["body"], format!("order for {BODY_SECRET}"), "{job}");
    assert_eq!(job["attributes"]["customer"], ATTR_SECRET);
    let err = &job["attempts"][0]["error"];
    assert_eq!(err["type"], "PaymentDeclined");
    assert_eq!(err["message"], format!("card of {ERROR_SECRET}"));
    assert_eq!(err["detail"], format!("trace {DETAIL_SECRET}"));
}

/// Every file under `dir`, raw bytes, recursively.
fn files(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Which of `needles` some file under `dir` holds.
fn found_on_disk(dir: &Path, needles: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    files(dir, &mut all);
    assert!(!all.is_empty());
    needles
        .iter()
        .filter(|n| all.iter().any(|(_, bytes)| contains(bytes, n)))
        .map(|n| n.to_string())
        .collect()
}

const SECRETS: [&str; 4] = [BODY_SECRET, ATTR_SECRET, ERROR_SECRET, DETAIL_SECRET];

#[tokio::test(flavor = "current_thread")]
async fn job_content_never_reaches_the_data_directory_in_clear() {
    let keys = tempfile::tempdir().unwrap();
    let a = key_file(keys.path(), "a.key", 1);
    // Without a key the same job lands in clear: the search below does find what is there.
    let plain = tempfile::tempdir().unwrap();
    let s = serve(plain.path(), None, &[]);
    fill(&s.url).await;
    drop(s);
    assert_eq!(found_on_disk(plain.path(), &SECRETS), SECRETS.to_vec());

    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), None, &[&a]);
    let id = fill(&s.url).await;
    check_plain(&s.url, &id).await;
    drop(s);
    assert_eq!(found_on_disk(dir.path(), &SECRETS), Vec::<String>::new());
    // And after a restart it all still reads.
    let s = serve(dir.path(), None, &[&a]);
    check_plain(&s.url, &id).await;
}

#[tokio::test(flavor = "current_thread")]
async fn keys_rotate_and_rekey_retires_the_old_one() {
    let keys = tempfile::tempdir().unwrap();
    let (a, b) = (key_file(keys.path(), "a.key", 1), key_file(keys.path(), "b.key", 2));
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), None, &[&a]);
    let old = fill(&s.url).await;
    drop(s);

    // B seals, A still opens: the old job reads, a new one is under B alone.
    let s = serve(dir.path(), None, &[&b, &a]);
    check_plain(&s.url, &old).await;
    let new = enqueue(&s.url, "sealed with b").await;
    drop(s);
    let s = serve(dir.path(), None, &[&b]);
    let job = ok(reqwest::Method::GET, format!("{}/v1/jobs/{new}", s.url), None).await;
    assert_eq!(job["body"], "sealed with b");
    // The old job needs A, which this server lacks: a clear error, and the server lives on.
    let (status, err) = call(reqwest::Method::GET, format!("{}/v1/jobs/{old}", s.url), None).await;
    assert_eq!(status, 503, "{err}");
    assert!(err.to_string().contains("encryption key"), "{err}");
    ok(reqwest::Method::GET, format!("{}/v1/jobs/{new}", s.url), None).await;
    drop(s);

    let out = Command::new(pg::BIN)
        .args(["rekey", "--json", "--data-dir"])
        .arg(dir.path())
        .arg("--encryption-key-file")
        .arg(&b)
        .arg("--encryption-key-file")
        .arg(&a)
        .env_remove("REDRIVE_ENCRYPTION_KEY_FILES")
        .output()
        .unwrap();
    assert!(out.status.success(), "rekey: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rekeyed"], 4, "body, attribute, message, detail: {report}");

    let s = serve(dir.path(), None, &[&b]);
    check_plain(&s.url, &old).await;
    drop(s);
    // Nothing sealed with A is left: A alone opens nothing.
    let s = serve(dir.path(), None, &[&a]);
    let (status, _) = call(reqwest::Method::GET, format!("{}/v1/jobs/{old}", s.url), None).await;
    assert_eq!(status, 503);
}

#[test]
fn a_bad_key_file_stops_the_start_naming_the_file() {
    let keys = tempfile::tempdir().unwrap();
    let short = keys.path().join("short.key");
    std::fs::write(&short, b"0123456789abcdef0123456789abcdef\n").unwrap();
    let missing = keys.path().join("missing.key");
    let dir = tempfile::tempdir().unwrap();
    for (file, says) in [(&short, "holds 33 bytes"), (&missing, "reading encryption key file")] {
        let out = command(dir.path(), None, &[file]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(says) && err.contains(&*file.to_string_lossy()), "{err}");
        assert!(!err.contains("panicked") && !err.contains("0123456789abcdef"), "{err}");
    }
}

/// On PostgreSQL the database holds no job content either (skipped without
/// `REDRIVE_TEST_PG_URL`, as the other PostgreSQL tests are).
#[tokio::test(flavor = "current_thread")]
async fn job_content_never_reaches_postgres_in_clear() {
    let Ok(base) = std::env::var("REDRIVE_TEST_PG_URL") else {
        eprintln!("REDRIVE_TEST_PG_URL is not set: skipped");
        return;
    };
    let db = pg::fresh_database(&base);
    let keys = tempfile::tempdir().unwrap();
    let a = key_file(keys.path(), "a.key", 1);
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), Some(&db), &[&a]);
    let id = fill(&s.url).await;
    check_plain(&s.url, &id).await;
    drop(s);
    let out = Command::new("pg_dump").args(["--data-only", &db]).output().expect("pg_dump runs");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    let found: Vec<&str> = SECRETS.into_iter().filter(|n| contains(&out.stdout, n)).collect();
    assert!(found.is_empty(), "in the dump: {found:?}");
    assert!(contains(&out.stdout, "rdenc1:"), "the dump holds the sealed values");
}

/// The key ids of the sealed values in `dump`.
fn key_ids(dump: &[u8]) -> std::collections::BTreeSet<String> {
    let text = String::from_utf8_lossy(dump);
    text.match_indices("rdenc1:")
        .filter_map(|(i, m)| text.get(i + m.len()..i + m.len() + 8))
        .map(str::to_owned)
        .collect()
}

fn pg_dump(db: &str) -> Vec<u8> {
    let out = Command::new("pg_dump").args(["--data-only", db]).output().expect("pg_dump runs");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// On PostgreSQL, `rekey --store` rewrites a live database: what A sealed (body, attribute,
/// error message and detail) is sealed with B while a server with both keys runs, values in
/// clear stay so, and afterwards B alone reads everything and the database names A nowhere.
#[tokio::test(flavor = "current_thread")]
async fn rekey_rewrites_a_live_postgres_database() {
    let Ok(base) = std::env::var("REDRIVE_TEST_PG_URL") else {
        eprintln!("REDRIVE_TEST_PG_URL is not set: skipped");
        return;
    };
    let db = pg::fresh_database(&base);
    let keys = tempfile::tempdir().unwrap();
    let (a, b) = (key_file(keys.path(), "a.key", 1), key_file(keys.path(), "b.key", 2));
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), Some(&db), &[&a]);
    let old = fill(&s.url).await;
    drop(s);
    let s = serve(dir.path(), Some(&db), &[]);
    let clear = enqueue(&s.url, "PLAIN-BODY-6021").await;
    drop(s);
    let ids_a = key_ids(&pg_dump(&db));
    assert_eq!(ids_a.len(), 1, "one key sealed so far: {ids_a:?}");

    // A server with both keys keeps running through the rewrite.
    let s = serve(dir.path(), Some(&db), &[&b, &a]);
    let new = enqueue(&s.url, "sealed with b").await;
    let out = Command::new(pg::BIN)
        .args(["rekey", "--json", "--store", &db])
        .arg("--encryption-key-file")
        .arg(&b)
        .arg("--encryption-key-file")
        .arg(&a)
        .env_remove("REDRIVE_ENCRYPTION_KEY_FILES")
        .env_remove("REDRIVE_DATA_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "rekey: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rekeyed"], 4, "body, attribute, message, detail: {report}");
    check_plain(&s.url, &old).await;
    drop(s);

    let s = serve(dir.path(), Some(&db), &[&b]);
    check_plain(&s.url, &old).await;
    let job = ok(reqwest::Method::GET, format!("{}/v1/jobs/{new}", s.url), None).await;
    assert_eq!(job["body"], "sealed with b");
    let job = ok(reqwest::Method::GET, format!("{}/v1/jobs/{clear}", s.url), None).await;
    assert_eq!(job["body"], "PLAIN-BODY-6021");
    drop(s);

    let dump = pg_dump(&db);
    let ids_b = key_ids(&dump);
    assert_eq!(ids_b.len(), 1, "one key seals now: {ids_b:?}");
    assert!(ids_a.is_disjoint(&ids_b), "A's key id is gone: {ids_a:?} {ids_b:?}");
    assert!(contains(&dump, "PLAIN-BODY-6021"), "values in clear stay as they are");
    let id_a = ids_a.first().unwrap();
    let sql = format!(
        "SELECT count(*) FROM redrive.jobs WHERE concat(body, attributes::text, attempts::text) \
         LIKE '%rdenc1:{id_a}:%'"
    );
    assert_eq!(pg::psql(&db, &sql), "0");
    // Run again, nothing is left to do.
    let out = Command::new(pg::BIN)
        .args(["rekey", "--json", "--store", &db, "--encryption-key-file"])
        .arg(&b)
        .env_remove("REDRIVE_ENCRYPTION_KEY_FILES")
        .output()
        .unwrap();
    assert!(out.status.success(), "rekey: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rekeyed"], 0, "{report}");
}
