//! `redrive bench --redis URL`: the same workload as the redrive run (producers, consumers,
//! batch, jobs, body size) through Redis streams with a consumer group, the way applications use
//! Redis as a queue: a pipelined batch of `XADD` to enqueue, `XREADGROUP … COUNT n BLOCK` to
//! lease, `XACK` and `XDEL` (pipelined) to ack. One connection per producer and consumer, as the
//! redrive run has. Durability is the Redis server's: run it with `appendonly yes` and
//! `appendfsync always` (scripts/bench-peers does) for a reply that means "on disk", as
//! redrive's `sync` does. Only what the workload needs of RESP is spoken here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::bench::{join_peer, now_us, share, PeerRun, LATENCY_MAX_US};

/// The stream and its consumer group, deleted and created at the start of each run.
const STREAM: &str = "redrive-bench";
const GROUP: &str = "workers";
/// How long an empty `XREADGROUP` waits for entries, in ms.
const BLOCK_MS: u64 = 1000;

/// A RESP reply.
#[derive(Debug)]
enum Reply {
    Status,
    Int,
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// One connection: commands are written together (a pipeline) and their replies read in order.
struct Conn {
    io: BufReader<TcpStream>,
    out: Vec<u8>,
    pending: usize,
}

impl Conn {
    async fn open(url: &str) -> anyhow::Result<Conn> {
        let addr = url.strip_prefix("redis://").context("a redis://host:port URL")?;
        let addr = addr.trim_end_matches('/');
        let stream =
            TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn { io: BufReader::new(stream), out: Vec::new(), pending: 0 })
    }

    /// Queues one command.
    fn push(&mut self, args: &[&[u8]]) {
        self.out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
        self.pending += 1;
    }

    /// Sends the queued commands and reads their replies; an error reply fails the call.
    async fn flush(&mut self) -> anyhow::Result<Vec<Reply>> {
        self.io.get_mut().write_all(&self.out).await.context("writing to Redis")?;
        self.out.clear();
        let mut replies = Vec::with_capacity(self.pending);
        for _ in 0..std::mem::take(&mut self.pending) {
            replies.push(self.read().await?);
        }
        Ok(replies)
    }

    async fn call(&mut self, args: &[&[u8]]) -> anyhow::Result<Reply> {
        self.push(args);
        Ok(self.flush().await?.remove(0))
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.io.read_line(&mut line).await.context("reading from Redis")? == 0 {
            bail!("Redis closed the connection");
        }
        Ok(line.trim_end_matches("\r\n").to_owned())
    }

    /// One reply; arrays are read iteratively (a stack of partly filled arrays).
    async fn read(&mut self) -> anyhow::Result<Reply> {
        let mut stack: Vec<(usize, Vec<Reply>)> = Vec::new();
        loop {
            let line = self.line().await?;
            let (kind, rest) = line.split_at(1);
            let len = || rest.parse::<i64>().context("a RESP length");
            let mut reply = match kind {
                "+" => Reply::Status,
                "-" => bail!("Redis answered an error: {rest}"),
                ":" => Reply::Int,
                "$" => match len()? {
                    n if n < 0 => Reply::Bulk(None),
                    n => {
                        let mut buf = vec![0; n as usize + 2];
                        self.io.read_exact(&mut buf).await.context("reading from Redis")?;
                        buf.truncate(n as usize);
                        Reply::Bulk(Some(buf))
                    }
                },
                "*" => match len()? {
                    n if n < 0 => Reply::Array(None),
                    0 => Reply::Array(Some(Vec::new())),
                    n => {
                        stack.push((n as usize, Vec::with_capacity(n as usize)));
                        continue;
                    }
                },
                _ => bail!("not a RESP reply: {line:?}"),
            };
            // File the reply into the arrays it completes.
            loop {
                let Some((want, items)) = stack.last_mut() else { return Ok(reply) };
                items.push(reply);
                if items.len() < *want {
                    break;
                }
                let (_, items) = stack.pop().expect("checked");
                reply = Reply::Array(Some(items));
            }
        }
    }
}

pub async fn run(
    url: &str,
    producers: u32,
    consumers: u32,
    jobs: u64,
    batch: u32,
    body_bytes: u32,
) -> anyhow::Result<PeerRun> {
    let mut setup = Conn::open(url).await?;
    setup.call(&[b"DEL", STREAM.as_bytes()]).await?;
    setup
        .call(&[b"XGROUP", b"CREATE", STREAM.as_bytes(), GROUP.as_bytes(), b"$", b"MKSTREAM"])
        .await?;
    let acked = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..producers {
        let share = share(jobs, producers, i);
        let conn = Conn::open(url).await?;
        tasks.push(tokio::spawn(async move {
            produce(conn, share, batch, body_bytes).await.map(|()| None)
        }));
    }
    for i in 0..consumers {
        let conn = Conn::open(url).await?;
        let acked = acked.clone();
        tasks.push(tokio::spawn(
            async move { consume(conn, i, batch, jobs, acked).await.map(Some) },
        ));
    }
    let run = join_peer(tasks, start, &acked).await?;
    setup.call(&[b"DEL", STREAM.as_bytes()]).await.ok();
    Ok(run)
}

/// Enqueues `share` jobs, a pipeline of `batch` `XADD`s at a time, each stamped with its send
/// time in µs.
async fn produce(mut conn: Conn, share: u64, batch: u32, body_bytes: u32) -> anyhow::Result<()> {
    let body = "x".repeat(body_bytes as usize);
    let mut sent = 0u64;
    while sent < share {
        let n = (share - sent).min(u64::from(batch));
        let t = now_us().to_string();
        for _ in 0..n {
            conn.push(&[
                b"XADD",
                STREAM.as_bytes(),
                b"*",
                b"t",
                t.as_bytes(),
                b"b",
                body.as_bytes(),
            ]);
        }
        conn.flush().await.context("Redis enqueue")?;
        sent += n;
    }
    Ok(())
}

/// Leases up to `batch` entries at a time for consumer `me`, records enqueue→start, and acks
/// them (`XACK` and `XDEL` in one pipeline), until every job is acked.
async fn consume(
    mut conn: Conn,
    me: u32,
    batch: u32,
    jobs: u64,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3)?;
    let (name, count, block) = (format!("c{me}"), batch.to_string(), BLOCK_MS.to_string());
    while acked.load(Ordering::Relaxed) < jobs {
        let reply = conn
            .call(&[
                b"XREADGROUP",
                b"GROUP",
                GROUP.as_bytes(),
                name.as_bytes(),
                b"COUNT",
                count.as_bytes(),
                b"BLOCK",
                block.as_bytes(),
                b"STREAMS",
                STREAM.as_bytes(),
                b">",
            ])
            .await
            .context("Redis lease")?;
        let now = now_us();
        let ids = entries(reply, |t| {
            latency.saturating_record(now.saturating_sub(t).clamp(1, LATENCY_MAX_US));
        })?;
        if ids.is_empty() {
            continue;
        }
        let mut ack: Vec<&[u8]> = vec![b"XACK", STREAM.as_bytes(), GROUP.as_bytes()];
        ack.extend(ids.iter().map(Vec::as_slice));
        conn.push(&ack);
        let mut del: Vec<&[u8]> = vec![b"XDEL", STREAM.as_bytes()];
        del.extend(ids.iter().map(Vec::as_slice));
        conn.push(&del);
        conn.flush().await.context("Redis ack")?;
        acked.fetch_add(ids.len() as u64, Ordering::Relaxed);
    }
    Ok(latency)
}

/// The entry ids of an `XREADGROUP` reply (`[[stream, [[id, [field, value, …]], …]]]`, or nil
/// when the wait ran out), calling `sent` with each entry's `t` field.
fn entries(reply: Reply, mut sent: impl FnMut(u64)) -> anyhow::Result<Vec<Vec<u8>>> {
    let Reply::Array(Some(streams)) = reply else { return Ok(Vec::new()) };
    let mut ids = Vec::new();
    for stream in streams {
        let Reply::Array(Some(mut parts)) = stream else { bail!("a malformed XREADGROUP reply") };
        let Some(Reply::Array(Some(items))) = parts.pop() else { bail!("no entries in the reply") };
        for item in items {
            let Reply::Array(Some(mut pair)) = item else { bail!("a malformed stream entry") };
            let (Some(Reply::Array(Some(fields))), Some(Reply::Bulk(Some(id)))) =
                (pair.pop(), pair.pop())
            else {
                bail!("a malformed stream entry")
            };
            let mut fields = fields.into_iter();
            while let (Some(Reply::Bulk(Some(k))), Some(Reply::Bulk(Some(v)))) =
                (fields.next(), fields.next())
            {
                if k == b"t" {
                    sent(std::str::from_utf8(&v)?.parse().context("a send time")?);
                }
            }
            ids.push(id);
        }
    }
    Ok(ids)
}
