//! The native API over a real socket, over the embedded engine: the shared cases
//! (`http_api/cases.rs`, also run over PostgreSQL) and what only this store can show, a
//! poisoned store.

use std::sync::Arc;
use std::time::Duration;

use redrive_core::time::{Clock, SystemClock};
use redrive_engine::{Durability, Engine, MemStorage, Store};
use redrive_server::sqs::SqsSettings;
use redrive_server::AppState;
use reqwest::StatusCode;
use serde_json::json;

#[macro_use]
#[path = "http_api/cases.rs"]
mod cases;

use cases::{code, Server};

/// A server over an engine on `storage`, in this process.
async fn start_on(storage: MemStorage) -> Server {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(Box::new(storage.clone()), Durability::Sync, clock.now_ms()).unwrap();
    let engine = Engine::start(store, clock);
    let state = Arc::new(AppState::new(engine.handle.clone(), SqsSettings::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        redrive_server::serve(listener, state, std::future::pending(), Duration::from_secs(1))
            .await
            .unwrap();
        drop(engine);
    });
    Server::new(url, "redrive_fsync_seconds_count", Box::new(()))
}

async fn start() -> Server {
    start_on(MemStorage::new()).await
}

http_api_cases!(start);

#[tokio::test]
async fn poisoned_store_refuses_writes_with_503_and_serves_reads() {
    let storage = MemStorage::new();
    let s = start_on(storage.clone()).await;
    s.queue("q", json!({})).await;
    storage.fail_syncs(true);
    let (st, b) = s.call("POST", "/v1/queues/q/jobs", Some(json!({"jobs":[{"body":"x"}]}))).await;
    assert_eq!((st, code(&b)), (StatusCode::SERVICE_UNAVAILABLE, "store_poisoned"));
    let (st, _) = s.call("GET", "/v1/queues/q", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, b) = s.call("GET", "/readyz", None).await;
    assert_eq!((st, b["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("poisoned")));
    let (st, _) = s.call("GET", "/healthz", None).await;
    assert_eq!(st, StatusCode::OK);
}
