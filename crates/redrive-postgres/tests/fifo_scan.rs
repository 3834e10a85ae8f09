//! A FIFO receive reads the first ready jobs in enqueue order from an index of FIFO jobs, and
//! asks an index of leased grouped jobs whether each is behind a lease of its group: its cost
//! does not grow with the queue's backlog. Rows written without the FIFO mark (by a server
//! from before it) are found all the same.

mod common;

use redrive_core::broker::{FailRequest, NewJob, ReceiveRequest, RedriveRequest};
use redrive_core::model::ErrorInfo;
use redrive_core::{Broker, QueuePatch};
use redrive_postgres::receive::{FIFO_BY_GROUP_SQL, FIFO_LOCK_SQL, FIFO_SQL};
use redrive_postgres::{PgBroker, PgOptions};

async fn broker() -> (PgBroker, tokio_postgres::Client) {
    let url = common::fresh_database().await;
    let options = PgOptions { pool_size: 4, sweep_interval_ms: 200 };
    let b = PgBroker::connect(&url, options).await.expect("broker connects");
    (b, common::connect(&url).await)
}

fn take(queue: &str, max: u32) -> ReceiveRequest {
    ReceiveRequest {
        queues: vec![queue.into()],
        max,
        wait_ms: Some(0),
        lease_ms: None,
        worker_id: None,
    }
}

/// `n` jobs spread over `groups` groups, in batches.
async fn fill(b: &PgBroker, queue: &str, n: usize, groups: usize) {
    for start in (0..n).step_by(1000) {
        let batch = (start..(start + 1000).min(n))
            .map(|i| NewJob {
                body: format!("{i}"),
                group: Some(format!("g{}", i % groups)),
                ..NewJob::default()
            })
            .collect();
        b.enqueue(queue.into(), batch).await.unwrap();
    }
}

async fn queue_id(c: &tokio_postgres::Client, queue: &str) -> i32 {
    let row = c.query_one("SELECT id FROM redrive.queues WHERE name = $1", &[&queue]).await;
    row.unwrap().get(0)
}

/// Shared buffers a FIFO leasing statement (`sql`) touched on `queue` (`EXPLAIN (ANALYZE,
/// BUFFERS)`, rolled back), planned as the server plans it: once, for any queue (a generic
/// plan, see `PgBroker::connect`). The plan's first `Buffers:` line is its root's, the whole
/// statement. Also its execution time, for the record.
async fn statement_buffers(
    c: &mut tokio_postgres::Client,
    queue: &str,
    sql: &str,
) -> (u64, String) {
    let id = queue_id(c, queue).await;
    let tx = c.transaction().await.unwrap();
    tx.query(FIFO_LOCK_SQL, &[&0_i64]).await.unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off;
         SET LOCAL jit = off;
         PREPARE fifo (int4, int8, int8, int4, int8, text, int8, int8) AS {sql}"
    ))
    .await
    .unwrap();
    // Queue, at most 10, no aging, no receive limit, a 30 s lease, no worker, room, no floor.
    let explain = format!(
        "EXPLAIN (ANALYZE, BUFFERS) EXECUTE fifo ({id}, 10, NULL, NULL, 30000, NULL, 1000, NULL)"
    );
    let lines: Vec<String> = tx
        .simple_query(&explain)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .collect();
    tx.rollback().await.unwrap();
    c.batch_execute("DEALLOCATE fifo").await.unwrap();
    assert!(lines.iter().any(|l| l.contains("$1")), "a generic plan:\n{}", lines.join("\n"));
    let root = lines
        .iter()
        .find(|l| l.trim_start().starts_with("Buffers:"))
        .unwrap_or_else(|| panic!("no buffers in the plan:\n{}", lines.join("\n")));
    let time = lines.iter().find_map(|l| l.strip_prefix("Execution Time: ")).unwrap_or("?");
    (common::buffers(root), time.to_owned())
}

/// Whether [`FIFO_SQL`] on `queue` leases nothing and asks for the walk by group (the first
/// of its three ready-heads columns), run and rolled back.
async fn asks_for_groups(c: &mut tokio_postgres::Client, queue: &str) -> bool {
    let id = queue_id(c, queue).await;
    let tx = c.transaction().await.unwrap();
    tx.query(FIFO_LOCK_SQL, &[&0_i64]).await.unwrap();
    // As `statement_buffers` runs it: at most 10, no aging, no receive limit, a 30 s lease, no
    // worker, room, no floor.
    let (max, aging, limit, lease, worker, room, floor) =
        (10_i64, None::<i64>, None::<i32>, 30_000_i64, None::<String>, 1_000_i64, None::<i64>);
    let rows = tx
        .query(FIFO_SQL, &[&id, &max, &aging, &limit, &lease, &worker, &room, &floor])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let heads = rows.iter().find(|r| r.get::<_, i32>(0) == 2).expect("the statement's own row");
    heads.get::<_, Option<i64>>(18).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_receive_costs_the_same_behind_ten_times_the_backlog() {
    let (b, mut c) = broker().await;
    for q in ["small.fifo", "large.fifo"] {
        b.put_queue(q.into(), QueuePatch::default()).await.unwrap();
    }
    fill(&b, "small.fifo", 2_000, 200).await;
    fill(&b, "large.fifo", 20_000, 200).await;
    // A lease in each: the next receive must also skip the jobs behind it.
    for q in ["small.fifo", "large.fifo"] {
        let got = b.receive(take(q, 10)).await.unwrap();
        assert_eq!(got.len(), 10);
    }
    c.batch_execute("ANALYZE redrive.jobs").await.unwrap();
    let (small, small_time) = statement_buffers(&mut c, "small.fifo", FIFO_SQL).await;
    let (large, large_time) = statement_buffers(&mut c, "large.fifo", FIFO_SQL).await;
    eprintln!("a receive: {small} buffers, {small_time} behind 2,000 jobs; {large}, {large_time} behind 20,000");
    assert!(
        large < small * 3 / 2,
        "a receive read {small} buffers behind 2,000 jobs and {large} behind 20,000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_marked_fifo_by_their_queue_wherever_they_come_from() {
    let (b, c) = broker().await;
    for q in ["s", "f.fifo"] {
        b.put_queue(q.into(), QueuePatch::default()).await.unwrap();
    }
    let one = |group: Option<&str>| NewJob {
        body: "x".into(),
        group: group.map(Into::into),
        ..NewJob::default()
    };
    b.enqueue("s".into(), vec![one(None), one(Some("g"))]).await.unwrap();
    b.enqueue("f.fifo".into(), vec![one(None), one(Some("g"))]).await.unwrap();
    c.batch_execute("SELECT redrive.enqueue('s', 'sql'); SELECT redrive.enqueue('f.fifo', 'sql');")
        .await
        .unwrap();
    let marks: Vec<(String, bool, i64)> = c
        .query(
            "SELECT q.name, j.ordered, count(*) FROM redrive.jobs j \
             JOIN redrive.queues q ON q.id = j.queue_id GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(marks, vec![("f.fifo".into(), true, 3), ("s".into(), false, 3)]);
}

/// A server from before the mark (while a fleet upgrades) inserts FIFO jobs without it: the
/// column's default marks them, so a FIFO receive still finds them, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_job_written_without_the_mark_is_delivered_in_order() {
    let (b, c) = broker().await;
    b.put_queue("f.fifo".into(), QueuePatch::default()).await.unwrap();
    b.enqueue(
        "f.fifo".into(),
        vec![NewJob { body: "first".into(), group: Some("g".into()), ..NewJob::default() }],
    )
    .await
    .unwrap();
    c.batch_execute(
        "INSERT INTO redrive.jobs (id, queue_id, state, priority, body, group_id, enqueued_at, \
           visible_at, expires_at) \
         SELECT redrive.uuid_v7(), id, 1, 1, 'second', 'g', redrive.now_ms() + 1, \
           redrive.now_ms(), redrive.now_ms() + 3600000 \
         FROM redrive.queues WHERE name = 'f.fifo'",
    )
    .await
    .unwrap();
    let first = b.receive(take("f.fifo", 10)).await.unwrap();
    assert_eq!(first.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["first", "second"]);
}

/// The FIFO mark follows a job into its dead-letter queue and out again by a redrive, so a
/// FIFO receive finds it in each; a standard job stays unmarked on the same path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mark_follows_a_job_through_its_dead_letter_queue_and_back() {
    let (b, c) = broker().await;
    let die = |receipt: String| FailRequest {
        receipt,
        error: ErrorInfo { kind: "E".into(), message: "no".into(), detail: None },
        retry_after_ms: None,
        non_retryable: true,
    };
    for (q, dlq) in [("f.fifo", "f-dlq.fifo"), ("s", "s-dlq")] {
        b.put_queue(dlq.into(), QueuePatch::default()).await.unwrap();
        let patch = QueuePatch {
            dead_letter_queue: Some(Some(dlq.into())),
            max_attempts: Some(Some(1)),
            ..QueuePatch::default()
        };
        b.put_queue(q.into(), patch).await.unwrap();
        let job = NewJob { body: q.into(), group: Some("g".into()), ..NewJob::default() };
        b.enqueue(q.into(), vec![job]).await.unwrap();
        let got = b.receive(take(q, 1)).await.unwrap();
        b.fail(die(got[0].receipt.clone())).await.unwrap();
        let back = b.redrive(dlq.into(), RedriveRequest::default()).await.unwrap();
        assert_eq!(back.moved, 1);
        let again = b.receive(take(q, 1)).await.unwrap();
        assert_eq!(again.len(), 1, "received from {q} after the redrive");
        b.fail(die(again[0].receipt.clone())).await.unwrap();
        let dead = b.receive(take(dlq, 1)).await.unwrap();
        assert_eq!(dead.len(), 1, "received from {dlq}");
    }
    let marks: Vec<(String, bool)> = c
        .query("SELECT body, ordered FROM redrive.jobs ORDER BY body", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(marks, vec![("f.fifo".into(), true), ("s".into(), false)]);
}

/// One group held by a lease with its backlog in front of the other groups (one tenant's
/// flood): the receive passes over the held group in one probe, so its cost does not grow with
/// the jobs waiting behind the lease. Walking them in enqueue order, it read 4,229 buffers
/// behind 2,000 and 40,643 behind 20,000 (28.6 ms, under the queue's lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receive_passes_over_a_held_group_whatever_its_backlog() {
    let (b, mut c) = broker().await;
    for (q, n) in [("small.fifo", 2_000), ("large.fifo", 20_000)] {
        b.put_queue(q.into(), QueuePatch::default()).await.unwrap();
        fill(&b, q, n, 1).await;
        assert_eq!(b.receive(take(q, 1)).await.unwrap().len(), 1, "the group's head is leased");
        fill(&b, q, 50, 50).await;
    }
    c.batch_execute("ANALYZE redrive.jobs").await.unwrap();
    // The first statement finds its look-ahead held and leases nothing; the second walks by
    // group.
    let mut cost = Vec::new();
    for q in ["small.fifo", "large.fifo"] {
        assert!(asks_for_groups(&mut c, q).await, "{q}: the look-ahead is held");
        let (ahead, ahead_time) = statement_buffers(&mut c, q, FIFO_SQL).await;
        let (by_group, by_group_time) = statement_buffers(&mut c, q, FIFO_BY_GROUP_SQL).await;
        eprintln!(
            "{q}: {ahead} buffers ({ahead_time}), then by group {by_group} ({by_group_time})"
        );
        cost.push(ahead + by_group);
    }
    let [small, large] = cost[..] else { unreachable!() };
    assert!(
        large < small * 3 / 2,
        "a receive read {small} buffers behind 2,000 held jobs and {large} behind 20,000"
    );
    let got = b.receive(take("large.fifo", 10)).await.unwrap();
    let bodies: Vec<&str> = got.iter().map(|d| d.body.as_str()).collect();
    // The fifty behind it are groups g0..g49: "0" is g0's, behind its lease.
    assert_eq!(bodies, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"], "the other groups");
}

/// A FIFO queue whose backlog is delayed jobs, with fewer visible jobs than a receive wants: the
/// receive takes the visible ones and does not walk the queue group by group (every visible job
/// was in its look-ahead), so its cost does not grow with the delayed backlog. The walk by group
/// read every delayed job (each group's, to find a visible one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_backlog_is_not_walked_by_a_receive_that_finds_little() {
    let (b, mut c) = broker().await;
    let mut cost = Vec::new();
    for (q, n) in [("small.fifo", 2_000), ("large.fifo", 20_000)] {
        b.put_queue(q.into(), QueuePatch::default()).await.unwrap();
        fill(&b, q, 3, 3).await;
        for start in (0..n).step_by(1000) {
            let batch = (start..start + 1000)
                .map(|i| NewJob {
                    body: format!("later {i}"),
                    group: Some(format!("g{}", i % 50)),
                    delay_ms: Some(600_000),
                    ..NewJob::default()
                })
                .collect();
            b.enqueue(q.into(), batch).await.unwrap();
        }
        // Vacuumed, so that whether a page is marked all-visible yet does not sway the count.
        c.batch_execute("VACUUM ANALYZE redrive.jobs").await.unwrap();
        assert!(!asks_for_groups(&mut c, q).await, "{q}: every visible job was looked at");
        let (buffers, time) = statement_buffers(&mut c, q, FIFO_SQL).await;
        eprintln!("{q}: {buffers} buffers ({time}) behind {n} delayed jobs");
        cost.push(buffers);
        let got = b.receive(take(q, 10)).await.unwrap();
        let bodies: Vec<&str> = got.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(bodies, ["0", "1", "2"], "the visible jobs, in order");
    }
    let [small, large] = cost[..] else { unreachable!() };
    assert!(
        large < small * 3 / 2,
        "{small} buffers behind 2,000 delayed jobs, {large} behind 20,000"
    );
}
