//! The triage agent end to end through a real server and the real CLI: timeouts are redriven
//! automatically and then succeed, bad data is proposed with a patch that a person approves and
//! the repaired job succeeds, a bug is escalated to a webhook, a job that dies again after an
//! agent redrive is escalated instead of looping, and one audit log shows every decision.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use redrive_client::{Client, FailRequest, JobId, NewJob, QueuePatch, ReceiveOptions};
use redrive_core::model::ErrorInfo;
use serde_json::Value;

type Hooks = Arc<Mutex<Vec<Value>>>;

async fn webhook_receiver() -> (String, Hooks) {
    let hooks: Hooks = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(|State(h): State<Hooks>, Json(v): Json<Value>| async move {
                h.lock().unwrap().push(v);
            }),
        )
        .with_state(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hooks)
}

/// Receives every ready job of `queue` and fails it with `(kind, message)` until all are dead.
async fn fail_until_dead(client: &Client, queue: &str, ids: &[JobId], kind: &str, message: &str) {
    let opts = ReceiveOptions { max: Some(100), wait_ms: Some(200), ..ReceiveOptions::default() };
    for _ in 0..200 {
        let mut alive = 0;
        for id in ids {
            if client.get_job(*id).await.unwrap().dead.is_none() {
                alive += 1;
            }
        }
        if alive == 0 {
            return;
        }
        for d in client.receive(queue, &opts).await.unwrap() {
            let req = FailRequest {
                receipt: d.receipt,
                error: ErrorInfo { kind: kind.into(), message: message.into(), detail: None },
                retry_after_ms: Some(0),
                non_retryable: false,
            };
            client.fail(&req).await.unwrap();
        }
    }
    panic!("jobs of {queue} did not die");
}

fn triage_run(url: &str, queue: &str, audit: &std::path::Path, webhook: &str) -> Value {
    let out = Command::new(common::BIN)
        .args(["triage", "run", "--json", "--mode", "auto", "--url", url, "--queue", queue])
        .arg("--audit")
        .arg(audit)
        .args(["--webhook", webhook])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Bad data: the agent proposes a patch, a person approves it, the repaired job succeeds.
async fn bad_data_is_proposed_patched_approved_and_succeeds(
    url: &str,
    client: &Client,
    audit: &std::path::Path,
) {
    let patch = QueuePatch { max_attempts: Some(Some(2)), ..QueuePatch::default() };
    client.put_queue("orders", &patch).await.unwrap();
    let job = NewJob { body: r#"{"sku":"A1","quantity":"3"}"#.into(), ..NewJob::default() };
    let id = client.enqueue("orders", &[job]).await.unwrap()[0].id;
    fail_until_dead(
        client,
        "orders",
        &[id],
        "ValidationError",
        "field 'quantity': expected integer, got string",
    )
    .await;

    let r = triage_run(url, "orders-dlq", audit, "http://127.0.0.1:9/unused");
    assert_eq!(
        (r["proposed"].as_u64(), r["executed"].as_u64()),
        (Some(1), Some(0)),
        "a patch waits for a person: {r}"
    );
    let proposal_id = r["records"][0]["proposal"].as_str().unwrap().to_owned();

    let pending = cli(url, &["triage", "list", "--status", "pending"]);
    let p = pending["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == proposal_id.as_str())
        .expect("the proposal is pending");
    assert_eq!(p["decision"]["action"], "redrive_patched");
    assert_eq!(
        p["decision"]["patch"],
        serde_json::json!([{"op": "replace", "path": "/quantity", "value": 3}])
    );

    let shown = Command::new(common::BIN)
        .args(["--url", url, "triage", "show", &proposal_id])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("-   \"quantity\": \"3\"") && shown.contains("+   \"quantity\": 3"),
        "the patch is shown as a diff of the body: {shown}"
    );

    let rejected_without_reason = Command::new(common::BIN)
        .args(["--url", url, "triage", "reject", &proposal_id, "--by", "bob"])
        .output()
        .unwrap();
    assert!(!rejected_without_reason.status.success(), "a rejection must say why");

    let done =
        cli(url, &["triage", "approve", &proposal_id, "--by", "alice", "--why", "safe cast"]);
    assert_eq!(
        (done["status"].as_str(), done["decided_by"].as_str()),
        (Some("approved"), Some("alice")),
        "{done}"
    );
    let new_id: JobId = done["result"]["patched"][0]["to"].as_str().unwrap().parse().unwrap();
    assert!(client.get_job(id).await.is_err(), "the dead job was replaced");

    let opts = ReceiveOptions { max: Some(1), wait_ms: Some(1000), ..ReceiveOptions::default() };
    let got = client.receive("orders", &opts).await.unwrap();
    assert_eq!(got[0].id, new_id);
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["quantity"], 3, "the worker gets the repaired body");
    assert_eq!(got[0].attributes["redrive:patched_from"], id.to_string());
    client.ack(&[got[0].receipt.clone()]).await.unwrap();
    assert_eq!(format!("{:?}", client.get_job(new_id).await.unwrap().state), "Acked");

    let again = Command::new(common::BIN)
        .args(["--url", url, "triage", "approve", &proposal_id, "--by", "alice"])
        .output()
        .unwrap();
    assert!(!again.status.success(), "a proposal is decided once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_redriven_bad_data_patched_bugs_escalated_and_nothing_loops() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path(), &[]);
    let client = Client::new(&server.url).unwrap();
    let (hook, hooks) = webhook_receiver().await;
    let audit = dir.path().join("audit.jsonl");
    let patch = QueuePatch { max_attempts: Some(Some(2)), ..QueuePatch::default() };
    for q in ["emails", "reports"] {
        client.put_queue(q, &patch).await.unwrap();
    }
    let send = |q: &'static str, n: usize| {
        let client = client.clone();
        async move {
            let jobs: Vec<NewJob> = (0..n)
                .map(|i| NewJob { body: format!("{{\"n\":{i}}}"), ..NewJob::default() })
                .collect();
            client.enqueue(q, &jobs).await.unwrap().into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    let emails = send("emails", 3).await;
    let reports = send("reports", 2).await;
    fail_until_dead(
        &client,
        "emails",
        &emails,
        "TimeoutError",
        "timed out after 30s talking to smtp.example.com:587",
    )
    .await;
    fail_until_dead(
        &client,
        "reports",
        &reports,
        "java.lang.NullPointerException",
        "Cannot invoke \"Report.owner()\" because \"report\" is null",
    )
    .await;

    let r = triage_run(&server.url, "emails-dlq", &audit, &hook);
    assert_eq!(
        (r["dead_jobs"].as_u64(), r["groups"].as_u64(), r["executed"].as_u64()),
        (Some(3), Some(1), Some(3)),
        "{r}"
    );
    let r = triage_run(&server.url, "reports-dlq", &audit, &hook);
    assert_eq!((r["escalated"].as_u64(), r["executed"].as_u64()), (Some(2), Some(0)), "{r}");
    let stored = cli(&server.url, &["triage", "list", "--status", "pending"]);
    let escalation = &stored["proposals"][0];
    assert_eq!(escalation["decision"]["action"], "escalate", "{stored}");
    assert_eq!(escalation["escalation"]["delivered"], true, "the delivery is kept on it: {stored}");
    assert_eq!(escalation["job_ids"].as_array().unwrap().len(), 2);
    {
        let hooks = hooks.lock().unwrap();
        assert_eq!(hooks.len(), 1, "one message per group");
        assert_eq!(hooks[0]["count"], 2);
        assert_eq!(hooks[0]["category"], "bug");
        assert!(hooks[0]["text"].as_str().unwrap().contains("reports"), "{}", hooks[0]);
    }

    // The redriven emails are back in their queue: one succeeds, two die again.
    let opts = ReceiveOptions { max: Some(10), wait_ms: Some(1000), ..ReceiveOptions::default() };
    let back = client.receive("emails", &opts).await.unwrap();
    assert_eq!(back.len(), 3, "redriven to the source queue");
    let ok = back.iter().find(|d| d.id == emails[0]).unwrap();
    client.ack(std::slice::from_ref(&ok.receipt)).await.unwrap();
    for d in back.iter().filter(|d| d.id != emails[0]) {
        client.extend(&d.receipt, 0).await.unwrap();
    }
    fail_until_dead(
        &client,
        "emails",
        &emails[1..],
        "TimeoutError",
        "timed out after 30s talking to smtp.example.com:587",
    )
    .await;
    assert_eq!(format!("{:?}", client.get_job(emails[0]).await.unwrap().state), "Acked");

    let r = triage_run(&server.url, "emails-dlq", &audit, &hook);
    assert_eq!(
        (r["dead_jobs"].as_u64(), r["executed"].as_u64(), r["escalated"].as_u64()),
        (Some(2), Some(0), Some(2)),
        "died again after an agent redrive: escalated, never looped: {r}"
    );
    let r = triage_run(&server.url, "reports-dlq", &audit, &hook);
    assert_eq!(
        (r["dead_jobs"].as_u64(), r["skipped"].as_u64(), r["groups"].as_u64()),
        (Some(2), Some(2), Some(0)),
        "already escalated: not decided again"
    );

    bad_data_is_proposed_patched_approved_and_succeeds(&server.url, &client, &audit).await;

    let records: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(String, String, usize)> = records
        .iter()
        .map(|r| {
            (
                r["queue"].as_str().unwrap().to_owned(),
                r["decision"]["action"].as_str().unwrap().to_owned(),
                r["executed"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("emails-dlq".into(), "redrive".into(), 3),
            ("reports-dlq".into(), "escalate".into(), 0),
            ("emails-dlq".into(), "redrive".into(), 0),
            ("orders-dlq".into(), "redrive_patched".into(), 0)
        ]
    );
    assert!(records
        .iter()
        .all(|r| r["provider"] == "rules" && r["input_hash"].as_str().unwrap().len() == 64));
    assert_eq!(hooks.lock().unwrap().len(), 2, "the died-again group was escalated too");
}

#[test]
fn eval_prints_the_scores_as_one_json_object() {
    let dataset = concat!(env!("CARGO_MANIFEST_DIR"), "/../redrive-triage/eval/dead_jobs.jsonl");
    let out = Command::new(common::BIN)
        .args(["triage", "eval", "--json", "--dataset", dataset])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["cases", "category_accuracy", "action_accuracy", "macro_f1", "unsafe"]);
    let bad = Command::new(common::BIN)
        .args(["triage", "eval", "--dataset", "/nonexistent.jsonl"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent.jsonl"));
}

fn cli(url: &str, args: &[&str]) -> Value {
    let out = Command::new(common::BIN).args(["--url", url, "--json"]).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_triage_redrives_in_process_and_outcomes_follow_the_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "mode = \"auto\"\nauto_categories = [\"transient\"]\n").unwrap();
    let data = dir.path().join("data");
    let policy_arg = policy.to_str().unwrap().to_owned();
    let server = common::start(
        &data,
        &["--triage", "--triage-policy", &policy_arg, "--triage-interval-s", "1"],
    );
    let client = Client::new(&server.url).unwrap();
    client
        .put_queue("sync", &QueuePatch { max_attempts: Some(Some(1)), ..QueuePatch::default() })
        .await
        .unwrap();
    let id =
        client.enqueue("sync", &[NewJob { body: "{}".into(), ..NewJob::default() }]).await.unwrap()
            [0]
        .id;
    fail_until_dead(
        &client,
        "sync",
        &[id],
        "ConnectionResetError",
        "[Errno 104] Connection reset by peer",
    )
    .await;

    // The in-process agent finds it within a pass or two and sends it back.
    let opts = ReceiveOptions { max: Some(1), wait_ms: Some(1000), ..ReceiveOptions::default() };
    let mut back = Vec::new();
    for _ in 0..20 {
        back = client.receive("sync", &opts).await.unwrap();
        if !back.is_empty() {
            break;
        }
    }
    assert_eq!(back.first().map(|d| d.id), Some(id), "redriven by the in-process agent");
    client.ack(std::slice::from_ref(&back[0].receipt)).await.unwrap();

    // The agent appends its audit record once the whole group is handled, after the redrive
    // the receive above saw: wait for it rather than race it.
    let audit = data.join("triage-audit.jsonl");
    for _ in 0..100 {
        if std::fs::read_to_string(&audit).is_ok_and(|text| text.ends_with('\n')) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let audit_arg = audit.to_str().unwrap().to_owned();
    let out = cli(&server.url, &["triage", "outcomes", "--audit", &audit_arg]);
    assert_eq!(out["transient"]["succeeded"], 1, "{out}");
    assert_eq!(out["transient"]["died_again"], 0, "{out}");

    let metrics =
        reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    for line in [
        "redrive_triage_decisions_total{category=\"transient\",action=\"redrive\"} 1",
        "redrive_triage_jobs_total{verdict=\"execute\"} 1",
        "redrive_triage_redriven_total 1",
        "redrive_triage_proposals{status=\"pending\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics");
    }
    // The agent follows its redrives at its next pass (every second here).
    let outcome =
        "redrive_triage_redrive_outcomes_total{category=\"transient\",outcome=\"succeeded\"} 1";
    let mut seen = false;
    for _ in 0..50 {
        let m =
            reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
        if m.contains(outcome) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(seen, "{outcome} never appeared on /metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_dead_jobs_respects_the_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path(), &[]);
    let client = Client::new(&server.url).unwrap();
    client.put_queue("burst", &QueuePatch::default()).await.unwrap();
    let jobs: Vec<NewJob> =
        (0..1000).map(|i| NewJob { body: format!("{{\"i\":{i}}}"), ..NewJob::default() }).collect();
    client.enqueue("burst", &jobs).await.unwrap();
    let opts = ReceiveOptions { max: Some(1000), wait_ms: Some(0), ..ReceiveOptions::default() };
    for d in client.receive("burst", &opts).await.unwrap() {
        let req = FailRequest {
            receipt: d.receipt,
            error: ErrorInfo {
                kind: "TimeoutError".into(),
                message: "timed out after 5s".into(),
                detail: None,
            },
            retry_after_ms: None,
            non_retryable: true,
        };
        client.fail(&req).await.unwrap();
    }
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "mode = \"auto\"\nredrives_per_minute = 100\n").unwrap();
    let audit = dir.path().join("audit.jsonl");
    let out = Command::new(common::BIN)
        .args(["--url", &server.url, "--json", "triage", "run", "--queue", "burst-dlq"])
        .arg("--policy")
        .arg(&policy)
        .arg("--audit")
        .arg(&audit)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["dead_jobs"].as_u64(), r["groups"].as_u64()),
        (Some(1000), Some(1)),
        "one decision for 1,000 identical failures"
    );
    assert_eq!(
        (r["executed"].as_u64(), r["proposed"].as_u64()),
        (Some(100), Some(900)),
        "100 per minute; the rest wait for a person"
    );
    let stats = client.queue_stats("burst").await.unwrap();
    assert_eq!(stats.counts.ready, 100, "exactly the executed ones went back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_set_on_the_server_beats_the_agents_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path(), &[]);
    let client = Client::new(&server.url).unwrap();
    let patch = QueuePatch { max_attempts: Some(Some(1)), ..QueuePatch::default() };
    let mut ids = Vec::new();
    for q in ["watched", "free"] {
        client.put_queue(q, &patch).await.unwrap();
        let id =
            client.enqueue(q, &[NewJob { body: "{}".into(), ..NewJob::default() }]).await.unwrap()
                [0]
            .id;
        fail_until_dead(&client, q, &[id], "ReadTimeout", "read timed out after 30s").await;
        ids.push(id);
    }
    let observe = dir.path().join("observe.toml");
    std::fs::write(&observe, "mode = \"observe\"\n").unwrap();
    let observe_arg = observe.to_str().unwrap().to_owned();
    let set = cli(&server.url, &["triage", "policy", "set", "watched-dlq", "--file", &observe_arg]);
    assert_eq!(set["mode"], "observe");
    assert_eq!(
        cli(&server.url, &["triage", "policy", "list"])["policies"]["watched-dlq"]["mode"],
        "observe"
    );

    let audit = dir.path().join("audit.jsonl");
    let watched = triage_run(&server.url, "watched-dlq", &audit, "http://127.0.0.1:9/unused");
    assert_eq!(
        (watched["recorded"].as_u64(), watched["executed"].as_u64()),
        (Some(1), Some(0)),
        "{watched}"
    );
    let free = triage_run(&server.url, "free-dlq", &audit, "http://127.0.0.1:9/unused");
    assert_eq!(
        free["executed"].as_u64(),
        Some(1),
        "the agent's own policy (auto) elsewhere: {free}"
    );

    cli(&server.url, &["triage", "policy", "delete", "watched-dlq"]);
    let gone = Command::new(common::BIN)
        .args(["--url", &server.url, "triage", "policy", "get", "watched-dlq"])
        .output()
        .unwrap();
    assert!(!gone.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_patch_lets_the_agent_apply_a_patch_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path(), &[]);
    let client = Client::new(&server.url).unwrap();
    client
        .put_queue("fixme", &QueuePatch { max_attempts: Some(Some(1)), ..QueuePatch::default() })
        .await
        .unwrap();
    let job = NewJob { body: r#"{"units":"12"}"#.into(), ..NewJob::default() };
    let id = client.enqueue("fixme", &[job]).await.unwrap()[0].id;
    fail_until_dead(&client, "fixme", &[id], "ValidationError", "field 'units': expected integer")
        .await;
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "mode = \"auto\"\nauto_patch = true\nauto_categories = [\"bad_data\"]\n",
    )
    .unwrap();
    let out = Command::new(common::BIN)
        .args(["--url", &server.url, "--json", "triage", "run", "--queue", "fixme-dlq", "--policy"])
        .arg(&policy)
        .arg("--audit")
        .arg(dir.path().join("audit.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["executed"].as_u64(), Some(1), "{r}");
    let opts = ReceiveOptions { max: Some(1), wait_ms: Some(1000), ..ReceiveOptions::default() };
    let got = client.receive("fixme", &opts).await.unwrap();
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["units"], 12);
    let approved = cli(&server.url, &["triage", "list", "--status", "approved"]);
    assert_eq!(
        approved["proposals"][0]["decided_by"], "redrive-triage-agent",
        "the record says who did it"
    );
}
