//! A real full disk: the test mounts a 3 MiB tmpfs (it runs as root, as CI does) and serves from
//! it. The server starts although a whole segment (64 MiB) cannot be reserved, refuses writes
//! with a 503 naming the cause once the disk fills, keeps serving reads, loses nothing it
//! acknowledged, says "the disk is full" when restarted without space, and serves again once
//! space is freed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{start, BIN};
use serde_json::{json, Value};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a tmpfs at {} (this test needs root, as CI has)", dir.display());
        Tmpfs(dir.to_owned())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "resizing the tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_real_full_disk_refuses_writes_keeps_reads_and_serves_again_after_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(dir.path(), "3m");
    let data = dir.path().join("data");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    let server = start(&data, &[]);
    let url = server.url.clone();
    let r = http.put(format!("{url}/v1/queues/q")).json(&json!({})).send().await.unwrap();
    assert!(r.status().is_success());
    let mut acked: Vec<String> = Vec::new();
    let (status, failure) = loop {
        let jobs: Vec<Value> =
            (0..10).map(|i| json!({"body": format!("{i} {}", "x".repeat(4000))})).collect();
        let r = http
            .post(format!("{url}/v1/queues/q/jobs"))
            .json(&json!({ "jobs": jobs }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        if !status.is_success() {
            break (status, body);
        }
        acked.extend(body["jobs"].as_array().unwrap().iter().map(|j| j["id"].to_string()));
        assert!(acked.len() < 10_000, "a 3 MiB disk never filled");
    };
    assert_eq!(status, 503, "{failure}");
    assert_eq!(failure["error"]["code"], "store_poisoned");
    let msg = failure["error"]["message"].as_str().unwrap();
    assert!(msg.contains("No space left on device"), "the cause is named: {msg}");
    assert!(acked.len() >= 100, "{} jobs fitted before the disk filled", acked.len());

    let id = acked[0].trim_matches('"');
    let r = http.get(format!("{url}/v1/jobs/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 200, "reads keep working");
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503, "not ready while writes are refused");
    drop(server);

    // Restarted with no space: a clear refusal, nothing changed.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("REDRIVE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("disk is full"), "says why: {stderr}");

    disk.resize("64m");
    let server = start(&data, &[]);
    let url = server.url.clone();
    for id in &acked {
        let id = id.trim_matches('"');
        let r = http.get(format!("{url}/v1/jobs/{id}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "job {id} was acknowledged and must be there");
        let job: Value = r.json().await.unwrap();
        assert_eq!(job["state"], "ready", "job {id}");
    }
    let r = http
        .post(format!("{url}/v1/queues/q/jobs"))
        .json(&json!({"jobs": [{"body": "after"}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "writes work again once space is freed");
    drop(server);
}
