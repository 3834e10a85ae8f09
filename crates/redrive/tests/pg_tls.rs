//! TLS to PostgreSQL: a cluster of its own that accepts only TLS connections, with a server
//! certificate for `localhost` from a CA made here (rcgen). `redrive serve --store` with each
//! `sslmode` of the URL: `verify-full` against that CA serves (and every connection of the
//! server is encrypted), against another CA or for another host name it refuses to start
//! saying why, `require` encrypts without checking, `disable` is refused by the database. A
//! role the database authenticates by client certificate (`cert` in `pg_hba.conf`) is served
//! with `sslcert` and `sslkey`, and refused without them.

mod certs;
mod pg;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use certs::Ca;
use rcgen::{CertificateParams, CertifiedIssuer, KeyPair};
use serde_json::{json, Value};

/// Stops the cluster when the test ends, passed or not.
struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        pg::cluster(Some(&self.0), &["stop"]);
    }
}

/// The role that logs in with a client certificate.
const CERT_ROLE: &str = "redrive_cert";

/// Turns TLS on in the cluster at `dir` with a certificate for `localhost` only, signed by
/// `issuer`, refuses every connection over TCP without it, and authenticates [`CERT_ROLE`] by
/// a client certificate from the CA in `client_ca` (PEM).
fn tls_only(dir: &Path, base: &str, issuer: &CertifiedIssuer<'static, KeyPair>, client_ca: &str) {
    let data = dir.join("data");
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, issuer)
        .unwrap();
    std::fs::write(data.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(data.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(data.join("client-ca.pem"), client_ca).unwrap();
    let hba = format!(
        "local all all trust\nhostssl all {CERT_ROLE} 127.0.0.1/32 cert\n\
         hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
    );
    std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
    // The server runs as `postgres` when the tests run as root: its key must be its own, 0600.
    let owner = std::fs::metadata(&data).unwrap();
    for f in ["server.crt", "server.key", "client-ca.pem", "pg_hba.conf"].map(|f| data.join(f)) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        std::os::unix::fs::chown(&f, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    pg::psql(base, "ALTER SYSTEM SET ssl = on");
    pg::psql(base, "ALTER SYSTEM SET ssl_ca_file = 'client-ca.pem'");
    pg::cluster(Some(dir), &["restart"]);
}

/// `redrive serve --store store` to its end: what it printed last, if it stopped.
fn refused(store: &str, data: &Path) -> String {
    let out = Command::new(pg::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--store", store, "--data-dir"])
        .arg(data)
        .env_remove("REDRIVE_STORE")
        .output()
        .expect("redrive runs");
    assert!(!out.status.success(), "{store}: started");
    String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").to_owned()
}

async fn call(http: &reqwest::Client, method: reqwest::Method, url: String, body: Value) -> Value {
    let r = http.request(method, url).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_database_that_accepts_only_tls_is_served_with_the_urls_sslmode() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pg-tls-cluster");
    let base = pg::cluster(Some(&dir), &[]);
    let _stop = Cluster(dir.clone());
    let files = tempfile::tempdir().unwrap();
    let (ca, other_ca) = (Ca::new(files.path(), "test-ca"), Ca::new(files.path(), "other-ca"));
    let client_ca = Ca::new(files.path(), "client-ca");
    tls_only(&dir, &base, &ca.issuer, &client_ca.issuer.pem());
    let ca_file = &ca.file;
    let port = base.rsplit_once(':').unwrap().1.split('/').next().unwrap().to_owned();
    let store = pg::fresh_database(&base);
    let db = store.rsplit_once('/').unwrap().1.to_owned();
    let url = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/{db}?{query}");
    let data = files.path().join("data");

    // Refused, each saying why.
    let said = refused(&url("localhost", "sslmode=disable"), &data);
    assert!(said.contains("no encryption"), "{said}");
    let other = format!("sslmode=verify-full&sslrootcert={}", other_ca.file.display());
    let said = refused(&url("localhost", &other), &data);
    assert!(said.contains("UnknownIssuer"), "{said}");
    let full = format!("sslmode=verify-full&sslrootcert={}", ca_file.display());
    let said = refused(&url("127.0.0.1", &full), &data);
    assert!(said.contains("not valid for name"), "{said}");

    // Served: checked fully, the signer only (another host name), or not checked.
    let verify_ca = format!("sslmode=verify-ca&sslrootcert={}", ca_file.display());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    for store in [
        url("localhost", &full),
        url("127.0.0.1", &verify_ca),
        url("127.0.0.1", "sslmode=require"),
        url("127.0.0.1", ""),
    ] {
        let server = pg::serve(&store, &data, &[]);
        let base_url = &server.url;
        call(&http, reqwest::Method::PUT, format!("{base_url}/v1/queues/q"), json!({})).await;
        let jobs = json!({"jobs": [{"body": store.clone()}]});
        call(&http, reqwest::Method::POST, format!("{base_url}/v1/queues/q/jobs"), jobs).await;
        let got = call(
            &http,
            reqwest::Method::POST,
            format!("{base_url}/v1/queues/q/receive"),
            json!({"max": 1, "wait_ms": 0}),
        )
        .await;
        assert_eq!(got["jobs"][0]["body"], store.as_str(), "{store}");
        let plain = pg::psql(
            &base,
            "SELECT count(*) FILTER (WHERE NOT s.ssl) || ' of ' || count(*) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'redrive%'",
        );
        assert!(plain.starts_with("0 of ") && plain != "0 of 0", "{store}: {plain} plain");
    }

    // A role that logs in with a client certificate (its common name), on a database it owns.
    for sql in [
        "DROP DATABASE IF EXISTS redrive_cert_db WITH (FORCE)".to_owned(),
        format!("DROP ROLE IF EXISTS {CERT_ROLE}"),
        format!("CREATE ROLE {CERT_ROLE} LOGIN"),
        format!("CREATE DATABASE redrive_cert_db OWNER {CERT_ROLE}"),
    ] {
        pg::psql(&base, &sql);
    }
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, CERT_ROLE);
    let cert = params.signed_by(&key, &client_ca.issuer).unwrap();
    let (cert_file, key_file) = (files.path().join("client.pem"), files.path().join("client.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let as_role = |query: &str| {
        format!("postgres://{CERT_ROLE}@localhost:{port}/redrive_cert_db?{full}{query}")
    };
    let said = refused(&as_role(""), &data);
    assert!(said.contains("certificate"), "{said}");
    let with_cert =
        as_role(&format!("&sslcert={}&sslkey={}", cert_file.display(), key_file.display()));
    let server = pg::serve(&with_cert, &data, &[]);
    let base_url = &server.url;
    call(&http, reqwest::Method::PUT, format!("{base_url}/v1/queues/q"), json!({})).await;
    let jobs = json!({"jobs": [{"body": "by certificate"}]});
    call(&http, reqwest::Method::POST, format!("{base_url}/v1/queues/q/jobs"), jobs).await;
}
