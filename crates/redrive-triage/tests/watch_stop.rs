//! The agent's lifecycle: a watching agent stops when told, between passes at once, and a pass
//! that outlives the bound is cut short instead of holding shutdown open.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use redrive_client::Client;
use redrive_triage::agent::Agent;
use redrive_triage::provider::Provider;

/// A server whose queue list answers after `delay` (never, if `None`).
async fn server(delay: Option<Duration>) -> String {
    let app = Router::new().route(
        "/v1/queues",
        get(move || async move {
            match delay {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
            axum::Json(serde_json::json!({ "queues": [] }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn agent(url: &str) -> Agent {
    let audit = PathBuf::from("/nonexistent/redrive-triage-audit.jsonl");
    Agent::new(Client::new(url).unwrap(), url.to_owned(), Provider::Rules, audit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_agent_stops_between_passes_when_told() {
    let url = server(Some(Duration::ZERO)).await;
    // An hour between passes: only the stop signal can end the wait.
    let watching = agent(&url).spawn_watch(Vec::new(), Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    assert!(watching.stop(Duration::from_secs(5)).await, "the agent stopped within the bound");
    assert!(started.elapsed() < Duration::from_secs(1), "stopped at once: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_in_flight_finishes_before_the_agent_stops() {
    let url = server(Some(Duration::from_millis(600))).await;
    let watching = agent(&url).spawn_watch(Vec::new(), Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert!(watching.stop(Duration::from_secs(5)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the pass was waited for, not cut: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_outlives_the_bound_is_cut_short() {
    let url = server(None).await;
    let watching = agent(&url).spawn_watch(Vec::new(), Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert!(!watching.stop(Duration::from_millis(300)).await, "reported as cut short");
    assert!(started.elapsed() < Duration::from_secs(2));
}
