//! The binary as a user drives it: a TOML config that declares queues, the CLI against a real
//! server (tables, `--json`, exit codes), durability shown at start-up, and graceful shutdown on
//! SIGTERM that exits 0 and keeps every job.

mod common;
mod pg;

use std::io::Read;
use std::process::{Command, Output};

use common::{start, BIN};
use serde_json::Value;

fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(BIN).arg("--url").arg(url).args(args).output().unwrap()
}

fn json(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cli(url, &all);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn config_file_cli_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("redrive.toml");
    std::fs::write(
        &config,
        r#"
durability = "sync"
[queues.reports]
max_attempts = 2
dead_letter_queue = "reports-failed"
[queues.reports-failed]
retention_ms = 600000
"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data, &["--config", config.to_str().unwrap()]);
    let url = server.url.clone();

    let queues = json(&url, &["queue", "list"]);
    let names: Vec<&str> =
        queues["queues"].as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["reports", "reports-failed"]);
    assert_eq!(queues["queues"][0]["config"]["dead_letter_queue"], "reports-failed");

    let table = cli(&url, &["queue", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("reports-failed"));

    let sent =
        cli(&url, &["send", "reports", "monthly", "--priority", "high", "--attr", "tenant=acme"]);
    assert!(sent.status.success());
    let id = String::from_utf8_lossy(&sent.stdout).trim().to_owned();
    let got = json(&url, &["receive", "reports", "--max", "5"]);
    assert_eq!(got["jobs"][0]["id"], id.as_str());
    assert_eq!(got["jobs"][0]["attributes"]["tenant"], "acme");
    let receipt = got["jobs"][0]["receipt"].as_str().unwrap().to_owned();
    let failed = cli(
        &url,
        &[
            "fail",
            &receipt,
            "--type",
            "Timeout",
            "--message",
            "took too long",
            "--retry-after-ms",
            "0",
        ],
    );
    assert!(failed.status.success(), "{}", String::from_utf8_lossy(&failed.stderr));
    let again = json(&url, &["receive", "reports"]);
    let receipt = again["jobs"][0]["receipt"].as_str().unwrap().to_owned();
    assert!(cli(&url, &["ack", &receipt]).status.success());
    let stale = cli(&url, &["ack", &receipt]);
    assert!(!stale.status.success(), "a second ack of the same receipt reports failure");
    let job = json(&url, &["job", "show", &id]);
    assert_eq!(job["state"], "acked");
    assert_eq!(job["attempts"][0]["error"]["type"], "Timeout");

    let missing = cli(&url, &["queue", "show", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(err.lines().count(), 1, "one-line reason: {err}");
    assert!(err.contains("queue_not_found"), "{err}");

    let kept =
        String::from_utf8_lossy(&cli(&url, &["send", "reports", "kept"]).stdout).trim().to_owned();

    // SIGTERM: a long poll in flight is answered, the server exits 0; durability (or the store)
    // was announced on stderr at start-up.
    let poll = {
        let url = url.clone();
        std::thread::spawn(move || {
            let t = std::time::Instant::now();
            (cli(&url, &["--json", "receive", "reports-failed", "--wait-ms", "20000"]), t.elapsed())
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (polled, waited) = poll.join().unwrap();
    assert!(
        polled.status.success(),
        "the long poll got an answer: {}",
        String::from_utf8_lossy(&polled.stderr)
    );
    assert!(
        waited < std::time::Duration::from_secs(15),
        "answered at shutdown, not at its 20 s wait: {waited:?}"
    );
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let mut stderr = String::new();
    server.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let announced = if common::on_postgres() { "store PostgreSQL" } else { "durability sync" };
    assert!(stderr.contains(announced), "{stderr}");
    drop(server);

    let server = start(&data, &[]);
    let job = json(&server.url, &["job", "show", &kept]);
    assert_eq!(job["state"], "ready", "the job survived the restart");
}

/// `--pg-pool-size` is bounded: 0 (or past 1000) refuses to start, naming the setting.
#[test]
fn a_pool_size_out_of_range_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--pg-pool-size", "0", "--data-dir"])
        .arg(dir.path())
        .env_remove("REDRIVE_STORE")
        .output()
        .expect("redrive runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_pool_size"), "{out:?}");
}

/// A PostgreSQL store the server cannot use stops it at start-up with the database's reason:
/// no such database, no such role, nothing listening.
#[test]
fn a_store_it_cannot_use_stops_the_server_saying_why() {
    let base = pg::server_url();
    let (prefix, _) = base.rsplit_once('/').expect("URL with a database");
    let (_, host) = prefix.split_once('@').expect("URL with a user");
    let cases = [
        (format!("{prefix}/redrive_no_such_db"), r#"database "redrive_no_such_db" does not exist"#),
        (
            format!("postgres://redrive_no_role@{host}/postgres"),
            r#"role "redrive_no_role" does not exist"#,
        ),
        ("postgres://postgres@127.0.0.1:1/postgres".to_owned(), "Connection refused"),
    ];
    for (store, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--store", &store, "--data-dir"])
            .arg(dir.path())
            .output()
            .expect("redrive runs");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{store}: started");
        let last = said.lines().last().unwrap_or("");
        assert!(last.contains(reason), "{store}: {reason:?} in the last line of {said}");
    }
}

/// The server runs without transparent huge pages (see `no_transparent_huge_pages` in main.rs):
/// the kernel says so for the process.
#[cfg(target_os = "linux")]
#[test]
fn the_server_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    // Reported since Linux 5.0.
    let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("THP_enabled line");
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}
