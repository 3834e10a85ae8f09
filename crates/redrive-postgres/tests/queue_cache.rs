//! Servers cache queue rows for enqueue and receive: a change is seen at once by the server
//! that made it and by every other server once its notification arrives; a deleted queue
//! takes no job on any server, cached or not.

mod common;

use std::time::{Duration, Instant};

use redrive_core::broker::{NewJob, ReceiveRequest};
use redrive_core::{Broker, Error, QueuePatch};
use redrive_postgres::{PgBroker, PgOptions};

fn body(len: usize) -> Vec<NewJob> {
    vec![NewJob { body: "x".repeat(len), ..NewJob::default() }]
}

fn limit(bytes: u32) -> QueuePatch {
    QueuePatch { max_message_bytes: Some(bytes), ..QueuePatch::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_changes_reach_every_servers_cache() {
    let url = common::fresh_database().await;
    let a = PgBroker::connect(&url, PgOptions::default()).await.unwrap();
    let b = PgBroker::connect(&url, PgOptions::default()).await.unwrap();
    a.put_queue("q".into(), limit(4096)).await.unwrap();
    // Both servers have read (and cached) the queue.
    a.enqueue("q".into(), body(2048)).await.unwrap();
    b.enqueue("q".into(), body(2048)).await.unwrap();

    // The server that changes the queue sees the change in its next request.
    b.put_queue("q".into(), limit(1024)).await.unwrap();
    let r = b.enqueue("q".into(), body(2048)).await;
    assert!(matches!(r, Err(Error::MessageTooLarge { max: 1024, .. })), "{r:?}");
    // The other server, once the change's notification arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match a.enqueue("q".into(), body(2048)).await {
            Err(Error::MessageTooLarge { max: 1024, .. }) => break,
            Ok(_) => assert!(Instant::now() < deadline, "server a never saw the new limit"),
            Err(e) => panic!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A paused queue delivers nothing on either server, though jobs wait in it.
    let jobs = (0..20).map(|_| NewJob { body: "x".into(), ..NewJob::default() }).collect();
    b.enqueue("q".into(), jobs).await.unwrap();
    b.put_queue("q".into(), QueuePatch { paused: Some(true), ..QueuePatch::default() })
        .await
        .unwrap();
    let take = ReceiveRequest {
        queues: vec!["q".into()],
        max: 1,
        wait_ms: Some(0),
        ..ReceiveRequest::default()
    };
    assert!(b.receive(take.clone()).await.unwrap().is_empty(), "paused on the server that paused");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.receive(take.clone()).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "server a never saw the pause");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting = b.get_queue("q".into()).await.unwrap().stats.counts.ready;
    assert!(waiting > 0, "server a took every job instead of seeing the pause");

    // Deleted: no server takes a job for it, however recently it cached the queue.
    a.enqueue("q".into(), vec![NewJob { body: "x".into(), ..NewJob::default() }]).await.unwrap();
    b.delete_queue("q".into()).await.unwrap();
    for server in [&a, &b] {
        let r = server.enqueue("q".into(), body(10)).await;
        assert!(matches!(&r, Err(Error::QueueNotFound(q)) if q == "q"), "{r:?}");
    }
}
