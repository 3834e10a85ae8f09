//! A real `redrive serve` child process for integration tests, killed when dropped (also when a
//! test fails) so no server outlives its test.
//!
//! The store is the embedded log in the test's directory, or PostgreSQL when
//! `REDRIVE_TEST_STORE=postgres`: then each directory gets a database of its own on the server
//! at `REDRIVE_TEST_PG_URL` (without it, the throwaway cluster `scripts/pg-test-cluster` starts
//! or reuses), so the same tests run against both stores. A server restarted on the same
//! directory finds the same database, as it would find the same log.

#![allow(dead_code)] // each test file uses its own part

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub const BIN: &str = env!("CARGO_BIN_EXE_redrive");

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

/// Whether the tests run against PostgreSQL (`REDRIVE_TEST_STORE=postgres`) rather than the
/// embedded log.
pub fn on_postgres() -> bool {
    match std::env::var("REDRIVE_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("") | Ok("embedded") | Err(_) => false,
        Ok(other) => {
            panic!("REDRIVE_TEST_STORE must be \"postgres\" or \"embedded\", not {other:?}")
        }
    }
}

/// Starts a server on a free port over `dir` (and its database, on PostgreSQL) and waits for
/// its address line.
pub fn start(dir: &Path, extra: &[&str]) -> Server {
    if on_postgres() {
        return start_on_postgres(dir, extra).0;
    }
    spawn(dir, None, extra)
}

/// Starts a server over `dir`'s PostgreSQL database whatever `REDRIVE_TEST_STORE` says; returns
/// it and the database's URL.
pub fn start_on_postgres(dir: &Path, extra: &[&str]) -> (Server, String) {
    let url = database_for(dir);
    (spawn(dir, Some(&url), extra), url)
}

fn spawn(dir: &Path, store: Option<&str>, extra: &[&str]) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir);
    if let Some(url) = store {
        cmd.args(["--store", url]);
    }
    let mut child = cmd
        .args(extra)
        .env_remove("REDRIVE_STORE")
        .env("REDRIVE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redrive starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let Some(url) = line.trim().strip_prefix("redrive listening on ") else {
        let _ = child.kill();
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        panic!("no address line from redrive serve: {line:?}; stderr: {err}");
    };
    Server { url: url.to_owned(), child }
}

/// The URL of `dir`'s database, created on first use.
fn database_for(dir: &Path) -> String {
    static DATABASES: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let mut known = DATABASES.get_or_init(Default::default).lock().unwrap();
    if let Some(url) = known.get(dir) {
        return url.clone();
    }
    if known.is_empty() {
        drop_leftovers();
    }
    let base = pg_server_url();
    let name = format!("{DATABASE_PREFIX}{}_{}", std::process::id(), known.len());
    psql(&format!("CREATE DATABASE {name}"));
    let (prefix, _) = base.rsplit_once('/').expect("a URL ending in a database");
    let url = format!("{prefix}/{name}");
    known.insert(dir.to_owned(), url.clone());
    url
}

/// Test databases are named `redrive_it_<pid>_<n>` after the process that made them.
const DATABASE_PREFIX: &str = "redrive_it_";

/// Drops the databases of earlier test processes that have exited, so the throwaway cluster
/// does not grow by a database per server with every run. A live process's are left alone.
fn drop_leftovers() {
    let sql =
        format!("SELECT datname FROM pg_database WHERE starts_with(datname, '{DATABASE_PREFIX}')");
    for name in psql(&sql).lines() {
        let pid = name.trim_start_matches(DATABASE_PREFIX).split('_').next().unwrap_or_default();
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Runs one SQL command as the test server's superuser, in its `postgres` database; returns
/// the rows it printed, one a line.
pub fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args([pg_server_url().as_str(), "-qXAtc", sql])
        .output()
        .expect("running psql (Debian's postgresql-client)");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test server's URL (to its `postgres` database).
fn pg_server_url() -> String {
    if let Ok(url) = std::env::var("REDRIVE_TEST_PG_URL") {
        return url;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-test-cluster");
    let out = Command::new(script).output().expect("running scripts/pg-test-cluster");
    assert!(
        out.status.success(),
        "scripts/pg-test-cluster failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a URL").trim().to_owned()
}
