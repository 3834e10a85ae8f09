//! A fresh database per test on the throwaway test server: `REDRIVE_TEST_PG_URL` (a URL to its
//! `postgres` database), or `scripts/pg-test-cluster`, which starts (or reuses) one under
//! `target/pg-test`. No database is no pass: the tests fail rather than skip.

#![allow(dead_code)] // each test file uses its own part

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use tokio_postgres::{Client, NoTls};

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

/// Test databases are named `redrive_x<pid>_<n>` after the process that made them.
const DATABASE_PREFIX: &str = "redrive_x";

/// A new, empty database on the test server; returns its URL. A process's first call drops the
/// databases of earlier test processes that have exited, so the throwaway cluster does not grow
/// by a database per test with every run.
pub async fn fresh_database() -> String {
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
            if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
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

/// A plain connection, as an application would hold one.
pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("database up");
    tokio::spawn(conn);
    client
}

/// Shared buffers (hit and read) of one `Buffers: shared hit=N read=M …` line of an `EXPLAIN
/// (ANALYZE, BUFFERS)` plan.
pub fn buffers(line: &str) -> u64 {
    let count = |what: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(what))
            .map_or(0, |n| n.parse().expect("a count"))
    };
    count("hit=") + count("read=")
}
