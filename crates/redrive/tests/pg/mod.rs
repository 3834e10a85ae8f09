//! PostgreSQL for the fleet, database-restart and migration tests: a fresh database per test on
//! the throwaway test server, and `redrive serve --store` children over it, killed when dropped.
//!
//! The server is `REDRIVE_TEST_PG_URL` (a URL to its `postgres` database), else the cluster
//! that `scripts/pg-test-cluster` starts or reuses under `target/pg-test`; a test that restarts
//! PostgreSQL uses a cluster of its own (`cluster_in`), so it disturbs no other test.

#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_redrive");
pub const CLUSTER_SCRIPT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-test-cluster");

/// `scripts/pg-test-cluster ARGS…` with the cluster in `dir` (`None`: the shared one).
pub fn cluster(dir: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = Command::new(CLUSTER_SCRIPT);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.env("REDRIVE_PG_TEST_DIR", d);
    }
    let out = cmd.output().expect("running scripts/pg-test-cluster");
    assert!(
        out.status.success(),
        "scripts/pg-test-cluster {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a URL").trim().to_owned()
}

/// The shared test server's URL (to its `postgres` database).
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("REDRIVE_TEST_PG_URL") {
        Ok(url) => url,
        Err(_) => cluster(None, &[]),
    })
    .clone()
}

/// Runs one SQL command with psql against `url`, returning its unaligned output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-qXAtc", sql])
        .output()
        .expect("running psql (Debian's postgresql-client)");
    assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// Test databases are named `redrive_f<pid>_<n>` after the process that made them.
const DATABASE_PREFIX: &str = "redrive_f";

/// A new, empty database on the server at `base`; returns its URL. A process's first call
/// drops the databases of earlier test processes that have exited, so the cluster does not
/// grow by a database per test with every run.
pub fn fresh_database(base: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    if n == 0 {
        let sql = format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{DATABASE_PREFIX}')"
        );
        for old in psql(base, &sql).lines() {
            let pid = old.trim_start_matches(DATABASE_PREFIX).split('_').next().unwrap_or("");
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                psql(base, &format!("DROP DATABASE IF EXISTS {old} WITH (FORCE)"));
            }
        }
    }
    let name = format!("{DATABASE_PREFIX}{}_{n}", std::process::id());
    psql(base, &format!("CREATE DATABASE {name}"));
    let (prefix, _) = base.rsplit_once('/').expect("a URL ending in a database");
    format!("{prefix}/{name}")
}

pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }
}

/// `redrive serve --store STORE` on a free port, its data directory (triage audit) in `dir`.
pub fn serve(store: &str, dir: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--store", store, "--data-dir"])
        .arg(dir)
        .args(extra)
        .env_remove("REDRIVE_STORE")
        .env("REDRIVE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redrive starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let Some(url) = line.trim().strip_prefix("redrive listening on ") else {
        let _ = child.kill();
        panic!("no address line from redrive serve: {line:?}");
    };
    Server { url: url.to_owned(), child }
}

/// `redrive serve` on the embedded log in `dir`.
pub fn serve_embedded(dir: &Path) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env_remove("REDRIVE_STORE")
        .env("REDRIVE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redrive starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("redrive listening on ").expect("address line").to_owned();
    Server { url, child }
}
