//! Job routes: enqueue, receive (one queue or several), ack, fail, extend, and job status by id.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use redrive_core::broker::{
    AckResult, Delivery, Enqueued, FailRequest, FailResult, JobInfo, NewJob,
};
use redrive_core::limits::RECEIVE_WAIT_MAX_MS;
use redrive_core::{JobId, Priority};

use crate::routes::endpoint;
use crate::transport::{decode, Retry};
use crate::{Client, Error, LONG_POLL_MARGIN_MS};

/// Options of a receive; `None` leaves the choice to the server (the queue's configuration).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReceiveOptions {
    /// Most jobs to return (server default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Long-poll time: how long to wait for a job when none is ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    /// Lease time of the returned jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Recorded in each job's attempt log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
}

#[derive(Deserialize)]
struct Jobs<T> {
    jobs: Vec<T>,
}

/// `{"jobs":[…]}` with each job's unset fields left out rather than sent as `null`: a batch of
/// small jobs is then about half the bytes for the server to parse.
struct EnqueueBody<'a>(&'a [NewJob]);

impl Serialize for EnqueueBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        struct Seq<'a>(&'a [NewJob]);
        impl Serialize for Seq<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(WireJob::from))
            }
        }
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("jobs", &Seq(self.0))?;
        map.end()
    }
}

#[derive(Serialize)]
struct WireJob<'a> {
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<Priority>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    #[serde(with = "redrive_core::time::rfc3339_opt", skip_serializing_if = "Option::is_none")]
    run_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    attributes: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
}

impl<'a> From<&'a NewJob> for WireJob<'a> {
    fn from(j: &'a NewJob) -> WireJob<'a> {
        WireJob {
            body: &j.body,
            priority: j.priority,
            delay_ms: j.delay_ms,
            run_at: j.run_at,
            idempotency_key: j.idempotency_key.as_deref(),
            attributes: &j.attributes,
            max_attempts: j.max_attempts,
            traceparent: j.traceparent.as_deref(),
        }
    }
}

impl Client {
    /// `POST /v1/queues/{q}/jobs`: enqueues a batch; the reply is in the order of `jobs`.
    /// Sent once: give jobs an idempotency key to make a retry after a lost reply safe.
    pub async fn enqueue(&self, queue: &str, jobs: &[NewJob]) -> Result<Vec<Enqueued>, Error> {
        let url = endpoint(&self.base, &["v1", "queues", queue, "jobs"]);
        let reply: Jobs<Enqueued> = self.post_json(url, &EnqueueBody(jobs), Retry::Once).await?;
        Ok(reply.jobs)
    }

    /// `POST /v1/queues/{q}/receive`: leases up to `opts.max` jobs, waiting up to `opts.wait_ms`.
    pub async fn receive(
        &self,
        queue: &str,
        opts: &ReceiveOptions,
    ) -> Result<Vec<Delivery>, Error> {
        let url = endpoint(&self.base, &["v1", "queues", queue, "receive"]);
        self.long_poll(url, opts, opts).await
    }

    /// `POST /v1/receive`: like [`Client::receive`] over several queues, earlier ones preferred.
    pub async fn receive_any(
        &self,
        queues: &[String],
        opts: &ReceiveOptions,
    ) -> Result<Vec<Delivery>, Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            queues: &'a [String],
            #[serde(flatten)]
            opts: &'a ReceiveOptions,
        }
        let url = endpoint(&self.base, &["v1", "receive"]);
        self.long_poll(url, &Body { queues, opts }, opts).await
    }

    /// `POST /v1/queues/{q}/receive` with `ack`: acks `receipts` (a worker's finished jobs), then
    /// receives as [`Client::receive`], in one request (and, where the store can, one commit).
    /// Returns one ack result per receipt, in order, and the jobs. Sent once, as a receive: if
    /// the reply is lost, the acks may have been made (acking those receipts again answers
    /// `stale`), and the jobs stay leased until their lease ends.
    pub async fn ack_receive(
        &self,
        queue: &str,
        receipts: &[String],
        opts: &ReceiveOptions,
    ) -> Result<(Vec<AckResult>, Vec<Delivery>), Error> {
        let url = endpoint(&self.base, &["v1", "queues", queue, "receive"]);
        self.acking_poll(url, &[], receipts, opts).await
    }

    /// `POST /v1/receive` with `ack`: like [`Client::ack_receive`] over several queues, earlier
    /// ones preferred.
    pub async fn ack_receive_any(
        &self,
        queues: &[String],
        receipts: &[String],
        opts: &ReceiveOptions,
    ) -> Result<(Vec<AckResult>, Vec<Delivery>), Error> {
        let url = endpoint(&self.base, &["v1", "receive"]);
        self.acking_poll(url, queues, receipts, opts).await
    }

    async fn acking_poll(
        &self,
        url: reqwest::Url,
        queues: &[String],
        receipts: &[String],
        opts: &ReceiveOptions,
    ) -> Result<(Vec<AckResult>, Vec<Delivery>), Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            queues: &'a [String],
            ack: &'a [String],
            #[serde(flatten)]
            opts: &'a ReceiveOptions,
        }
        #[derive(Deserialize)]
        struct Reply {
            jobs: Vec<Delivery>,
            #[serde(default)]
            acked: Vec<AckResult>,
        }
        let body = Body { queues, ack: receipts, opts };
        let reply: Reply = decode(self.poll(url, &body, opts).await?).await?;
        if reply.acked.len() != receipts.len() {
            return Err(Error::Decode(format!(
                "{} ack results for {} receipts",
                reply.acked.len(),
                receipts.len()
            )));
        }
        Ok((reply.acked, reply.jobs))
    }

    async fn long_poll<B: Serialize>(
        &self,
        url: reqwest::Url,
        body: &B,
        opts: &ReceiveOptions,
    ) -> Result<Vec<Delivery>, Error> {
        Ok(decode::<Jobs<Delivery>>(self.poll(url, body, opts).await?).await?.jobs)
    }

    /// A receive is sent once (a lost reply leaves jobs leased until their lease ends), with a
    /// timeout that covers the long poll.
    async fn poll<B: Serialize>(
        &self,
        url: reqwest::Url,
        body: &B,
        opts: &ReceiveOptions,
    ) -> Result<reqwest::Response, Error> {
        let wait_ms = opts.wait_ms.unwrap_or(RECEIVE_WAIT_MAX_MS).min(RECEIVE_WAIT_MAX_MS);
        let timeout = self.timeout + Duration::from_millis(wait_ms + LONG_POLL_MARGIN_MS);
        self.send(Method::POST, url, Some(body), Retry::Once, timeout).await
    }

    /// `POST /v1/ack`: completes leased jobs; one result per receipt, in order.
    pub async fn ack(&self, receipts: &[String]) -> Result<Vec<AckResult>, Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            receipts: &'a [String],
        }
        #[derive(Deserialize)]
        struct Reply {
            results: Vec<AckResult>,
        }
        let url = endpoint(&self.base, &["v1", "ack"]);
        let reply: Reply = self.post_json(url, &Body { receipts }, Retry::Idempotent).await?;
        if reply.results.len() != receipts.len() {
            return Err(Error::Decode(format!(
                "{} ack results for {} receipts",
                reply.results.len(),
                receipts.len()
            )));
        }
        Ok(reply.results)
    }

    /// `POST /v1/fail`: records a failed attempt; the job is retried later or dies.
    /// [`Error::StaleReceipt`] when the lease already ended.
    pub async fn fail(&self, req: &FailRequest) -> Result<FailResult, Error> {
        self.post_json(endpoint(&self.base, &["v1", "fail"]), req, Retry::Once).await
    }

    /// `POST /v1/extend`: sets the lease to end `lease_ms` from now (a heartbeat); 0 releases the
    /// job at once. Returns the new expiry in milliseconds since the epoch.
    pub async fn extend(&self, receipt: &str, lease_ms: u64) -> Result<u64, Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            receipt: &'a str,
            lease_ms: u64,
        }
        #[derive(Deserialize)]
        struct Reply {
            #[serde(with = "redrive_core::time::rfc3339")]
            lease_expires_at: u64,
        }
        let url = endpoint(&self.base, &["v1", "extend"]);
        let reply: Reply =
            self.post_json(url, &Body { receipt, lease_ms }, Retry::Idempotent).await?;
        Ok(reply.lease_expires_at)
    }

    /// `GET /v1/jobs/{id}`: state, timestamps, dead reason and attempt log.
    pub async fn get_job(&self, id: JobId) -> Result<JobInfo, Error> {
        self.get_json(endpoint(&self.base, &["v1", "jobs", &id.to_string()])).await
    }

    /// `DELETE /v1/jobs/{id}`: deletes a job that is not leased.
    pub async fn delete_job(&self, id: JobId) -> Result<(), Error> {
        let url = endpoint(&self.base, &["v1", "jobs", &id.to_string()]);
        self.send(Method::DELETE, url, None::<&()>, Retry::Idempotent, self.timeout).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_options_leave_out_what_is_not_set() {
        let o = ReceiveOptions { max: Some(10), wait_ms: Some(0), ..ReceiveOptions::default() };
        assert_eq!(serde_json::to_string(&o).unwrap(), r#"{"max":10,"wait_ms":0}"#);
        assert_eq!(serde_json::to_string(&ReceiveOptions::default()).unwrap(), "{}");
    }

    #[test]
    fn enqueue_body_leaves_out_unset_fields_and_round_trips() {
        let jobs = [
            NewJob { body: "a".into(), ..NewJob::default() },
            NewJob {
                body: "b".into(),
                priority: Some(Priority::High),
                run_at: Some(1_763_800_000_123),
                attributes: [("t".to_owned(), "1".to_owned())].into(),
                ..NewJob::default()
            },
        ];
        let text = serde_json::to_string(&EnqueueBody(&jobs)).unwrap();
        assert_eq!(
            text,
            r#"{"jobs":[{"body":"a"},{"body":"b","priority":"high","run_at":"2025-11-22T08:26:40.123Z","attributes":{"t":"1"}}]}"#
        );
        #[derive(Deserialize)]
        struct Back {
            jobs: Vec<NewJob>,
        }
        let back: Back = serde_json::from_str(&text).unwrap();
        assert_eq!(back.jobs, jobs);
    }
}
