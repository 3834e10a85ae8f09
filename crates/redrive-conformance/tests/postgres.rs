//! The behaviour suite against PostgreSQL, each test in a database of its own.
//!
//! The server comes from `REDRIVE_TEST_PG_URL` (a URL to its `postgres` database); without it,
//! `scripts/pg-test-cluster` starts (or reuses) a throwaway cluster under `target/pg-test`.
//! No database is no pass: the tests fail rather than skip.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use redrive_core::Error;
use redrive_postgres::{schema, PgBroker, PgOptions};
use tokio_postgres::NoTls;

fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("REDRIVE_TEST_PG_URL") {
            return url;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-test-cluster");
        let out = std::process::Command::new(script).output().expect("running pg-test-cluster");
        assert!(
            out.status.success(),
            "scripts/pg-test-cluster failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("a URL").trim().to_owned()
    })
}

/// Test databases are named `redrive_t<pid>_<n>` after the process that made them.
const DATABASE_PREFIX: &str = "redrive_t";

/// A new, empty database on the test server; returns its URL. The first call of a process
/// drops the databases of earlier test processes that have exited, so the throwaway cluster
/// does not grow by a database per test with every run.
async fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = server_url();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{DATABASE_PREFIX}{}_{n}", std::process::id());
    let (client, conn) = tokio_postgres::connect(base, NoTls).await.expect("test server up");
    let driver = tokio::spawn(conn);
    if n == 0 {
        const OLD: &str = "SELECT datname FROM pg_database WHERE starts_with(datname, $1)";
        for row in client.query(OLD, &[&DATABASE_PREFIX]).await.expect("databases listed") {
            let old: String = row.get(0);
            let pid = old.trim_start_matches(DATABASE_PREFIX).split('_').next().unwrap_or("");
            let gone =
                pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists();
            if gone {
                let drop = format!("DROP DATABASE IF EXISTS {old} WITH (FORCE)");
                client.batch_execute(&drop).await.expect("old test database dropped");
            }
        }
    }
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("database created");
    drop(client);
    let _ = driver.await;
    let (prefix, _) = base.rsplit_once('/').expect("URL with a database");
    format!("{prefix}/{name}")
}

async fn postgres() -> PgBroker {
    let url = fresh_database().await;
    // The sweep is slow here so that no behaviour passes only because a sweep happened to run:
    // the engine has no sweep, and each operation must see time as it is. Retention, which
    // needs it, allows for one interval.
    let options = PgOptions { pool_size: 4, sweep_interval_ms: 5000 };
    PgBroker::connect(&url, options).await.expect("broker connects")
}

redrive_conformance::suite!(postgres);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_migrates_once_and_refuses_a_newer_schema() {
    let url = fresh_database().await;
    let options = PgOptions::default();
    drop(PgBroker::connect(&url, options.clone()).await.expect("first start migrates"));
    drop(PgBroker::connect(&url, options.clone()).await.expect("second start finds it current"));
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    let driver = tokio::spawn(conn);
    let newer = schema::SCHEMA_VERSION + 1;
    client
        .execute("INSERT INTO redrive.schema_version (version) VALUES ($1)", &[&newer])
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    match PgBroker::connect(&url, options).await {
        Err(Error::StoreUnavailable(m)) => assert!(m.contains("newer"), "{m}"),
        Err(e) => panic!("wrong refusal: {e:?}"),
        Ok(_) => panic!("started against a newer schema"),
    }
}
