//! Traces through a job's whole life, seen by an OTLP receiver of our own (it decodes the
//! protobuf export): a job that fails twice, dies, is redriven by the in-process triage agent
//! and then succeeds leaves every span of the messaging conventions, each linked to the one
//! creation context, with the worker's handler span inside its process span; with
//! `--trace-attempts children` the attempts are children of the creation context instead.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry::trace::{Span as _, Tracer as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use redrive_client::worker::{JobError, TraceAttempts, Worker};
use redrive_client::{Backoff, Client, NewJob, QueuePatch};
use redrive_server::traces::{otlp_provider, OtlpConfig};

type Spans = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP receiver on a free port: every span any export carried.
async fn receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(|State(spans): State<Spans>, body: Bytes| async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                let mut all = spans.lock().unwrap();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        all.extend(ss.spans);
                    }
                }
            }),
        )
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a Any> {
    s.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn text(s: &Span, key: &str) -> String {
    match attr(s, key) {
        Some(Any::StringValue(v)) => v.clone(),
        Some(Any::IntValue(v)) => v.to_string(),
        other => panic!("{}: no {key} ({other:?})", s.name),
    }
}

/// `(trace id, span id)` of a span.
fn ids(s: &Span) -> (Vec<u8>, Vec<u8>) {
    (s.trace_id.clone(), s.span_id.clone())
}

fn linked_to(s: &Span, creation: &(Vec<u8>, Vec<u8>)) -> bool {
    s.links.iter().any(|l| (l.trace_id.clone(), l.span_id.clone()) == *creation)
}

fn child_of(s: &Span, creation: &(Vec<u8>, Vec<u8>)) -> bool {
    (s.trace_id.clone(), s.parent_span_id.clone()) == *creation
}

/// Waits until `pick` finds what it wants among the spans, or fails naming what came.
async fn until_spans(spans: &Spans, what: &str, pick: impl Fn(&[Span]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if pick(&spans.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<String> = spans.lock().unwrap().iter().map(|s| s.name.clone()).collect();
    panic!("{what}: never seen; spans: {names:?}");
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_spans_from_send_to_dead_letter_triage_redrive_and_success() {
    // Exports every 100 ms rather than 5 s, here and in the servers.
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    let (otlp, spans) = receiver().await;
    let config = OtlpConfig {
        url: format!("{otlp}/v1/traces"),
        headers: Vec::new(),
        service_name: "test-worker".into(),
    };
    let provider = otlp_provider(config, tokio::runtime::Handle::current());
    opentelemetry::global::set_tracer_provider(provider.clone());

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "mode = \"auto\"\nauto_categories = [\"transient\"]\n").unwrap();
    let policy = policy.to_str().unwrap().to_owned();
    let server = common::start(
        &dir.path().join("data"),
        &[
            "--otlp-endpoint",
            &otlp,
            "--triage",
            "--triage-policy",
            &policy,
            "--triage-interval-s",
            "1",
        ],
    );
    let client = Client::new(&server.url).unwrap();
    let quick = Backoff { base_ms: 10, max_ms: 50 };
    let patch =
        QueuePatch { max_attempts: Some(Some(2)), backoff: Some(quick), ..QueuePatch::default() };
    client.put_queue("jobs", &patch).await.unwrap();
    let id =
        client.enqueue("jobs", &[NewJob { body: "{}".into(), ..NewJob::default() }]).await.unwrap()
            [0]
        .id;

    // Fails twice (into the dead-letter queue), then, redriven by the agent, succeeds.
    let calls = Arc::new(AtomicU32::new(0));
    let handled = calls.clone();
    let worker = Worker::builder(client.clone()).queues(["jobs"]).handler(move |_job| {
        let n = handled.fetch_add(1, Ordering::SeqCst);
        async move {
            let tracer = opentelemetry::global::tracer("handler");
            tracer.start("charge the card").end();
            if n < 2 {
                return Err(JobError::new(
                    "ConnectionResetError",
                    "[Errno 104] Connection reset by peer",
                ));
            }
            Ok(())
        }
    });
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get_job(id).await.unwrap().completed_at.is_none() {
        assert!(Instant::now() < deadline, "the job never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    running.await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    provider.force_flush().unwrap();

    until_spans(&spans, "every span of the job", |s| {
        named(s, "ack jobs").len() == 1
            && named(s, "process jobs").len() == 3
            && named(s, "triage jobs-dlq").len() == 1
            && named(s, "redrive jobs").len() == 1
    })
    .await;
    let spans = spans.lock().unwrap().clone();
    let send = named(&spans, "send jobs");
    assert_eq!(send.len(), 1);
    let send = send[0];
    assert_eq!(send.kind, SpanKind::Producer as i32);
    assert_eq!(text(send, "messaging.message.id"), id.to_string());
    let creation = ids(send);
    let job = id.to_string();

    // (name, kind, how many, whether it carries an error): each linked to the creation context,
    // with the job's id and the attempt.
    let expected = [
        ("receive jobs", SpanKind::Client, 3, false),
        ("process jobs", SpanKind::Consumer, 3, false),
        ("nack jobs", SpanKind::Client, 1, true),
        ("dead_letter jobs", SpanKind::Client, 1, true),
        ("triage jobs-dlq", SpanKind::Internal, 1, false),
        ("redrive jobs", SpanKind::Producer, 1, false),
        ("ack jobs", SpanKind::Client, 1, false),
    ];
    for (name, kind, n, errs) in expected {
        let found = named(&spans, name);
        assert_eq!(found.len(), n, "{name}: {found:?}");
        for s in found {
            assert_eq!(s.kind, kind as i32, "{name}");
            assert!(linked_to(s, &creation), "{name} links to the creation context: {s:?}");
            assert_ne!(s.trace_id, creation.0, "{name}: an attempt is a trace of its own");
            assert_eq!(text(s, "messaging.system"), "redrive", "{name}");
            assert_eq!(text(s, "messaging.message.id"), job, "{name}");
            // A redriven job starts over: it has not been delivered since (attempt 0).
            let first = if name == "redrive jobs" { 0 } else { 1 };
            assert!(text(s, "redrive.job.attempt").parse::<u32>().unwrap() >= first, "{name}");
            let failed = s.status.as_ref().is_some_and(|st| st.code == 2);
            assert_eq!(failed, errs || (name == "process jobs" && failed), "{name} status");
        }
    }
    let dead = named(&spans, "dead_letter jobs")[0];
    assert_eq!(text(dead, "messaging.operation.type"), "settle");
    assert_eq!(text(dead, "error.type"), "ConnectionResetError");
    let triage = named(&spans, "triage jobs-dlq")[0];
    assert_eq!(text(triage, "redrive.triage.action"), "redrive");
    let failed_process = named(&spans, "process jobs")
        .into_iter()
        .filter(|s| s.status.as_ref().is_some_and(|st| st.code == 2))
        .count();
    assert_eq!(failed_process, 2, "two attempts failed in the handler");
    // The handler's own span is inside its attempt's process span.
    let process: Vec<_> = named(&spans, "process jobs").into_iter().map(ids).collect();
    let handler = named(&spans, "charge the card");
    assert_eq!(handler.len(), 3);
    for h in handler {
        assert!(
            process.iter().any(|p| child_of(h, p)),
            "handler span outside a process span: {h:?}"
        );
    }
    drop(server);

    // Opt-in: attempts are children of the creation context, one waterfall per job.
    let (otlp, spans) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(
        &dir.path().join("data"),
        &["--otlp-endpoint", &otlp, "--trace-attempts", "children"],
    );
    let client = Client::new(&server.url).unwrap();
    client.put_queue("one", &QueuePatch::default()).await.unwrap();
    // A producer's own context is the creation context, and the send span its child.
    let producer = "00-11111111111111111111111111111111-2222222222222222-01";
    let id = client
        .enqueue(
            "one",
            &[NewJob {
                body: "{}".into(),
                traceparent: Some(producer.into()),
                ..NewJob::default()
            }],
        )
        .await
        .unwrap()[0]
        .id;
    let provider = otlp_provider(
        OtlpConfig {
            url: format!("{otlp}/v1/traces"),
            headers: Vec::new(),
            service_name: "w".into(),
        },
        tokio::runtime::Handle::current(),
    );
    opentelemetry::global::set_tracer_provider(provider.clone());
    let worker = Worker::builder(client.clone())
        .queues(["one"])
        .trace_attempts(TraceAttempts::Children)
        .handler(|_job| async { Ok(()) });
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = rx.await;
    }));
    while client.get_job(id).await.unwrap().completed_at.is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    running.await.unwrap();
    provider.force_flush().unwrap();
    until_spans(&spans, "ack and process", |s| {
        !named(s, "ack one").is_empty() && !named(s, "process one").is_empty()
    })
    .await;
    let spans = spans.lock().unwrap().clone();
    let creation = (vec![0x11; 16], vec![0x22; 8]);
    for name in ["process one", "ack one"] {
        let s = named(&spans, name)[0];
        assert!(child_of(s, &creation), "{name} is a child of the creation context: {s:?}");
        assert!(s.links.is_empty(), "{name}");
    }
    assert!(
        child_of(named(&spans, "send one")[0], &creation),
        "the producer's context is the send span's parent"
    );
}

#[tokio::test]
async fn json_logs_carry_the_requests_trace_and_span_ids() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // Spawned here: the audit line is at info, which the shared launcher's servers leave out.
    let mut child = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
        .arg(dir.path())
        .env_remove("REDRIVE_STORE")
        .env("REDRIVE_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("redrive listening on ").unwrap().to_owned();
    let mut server = common::Server { child, url };
    let tp = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01";
    let put = reqwest::Client::new()
        .put(format!("{}/v1/queues/logged", server.url))
        .header("traceparent", tp)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    // The audit line of that request, once the server has written it.
    server.child.kill().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut server.child.stderr.take().unwrap(), &mut err).unwrap();
    let line = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"].as_str().is_some_and(|m| m.contains("queue.create")))
        .unwrap_or_else(|| panic!("no JSON audit line in {err}"));
    let span = &line["spans"][0];
    assert_eq!(span["trace_id"], "5759e988bd862e3fe1be46a994272793", "{line}");
    assert_eq!(span["span_id"], "53995c3f42cd8ad8", "{line}");
}

/// The SQS door takes a send's `X-Amzn-Trace-Id` header as the message's creation context and
/// gives it back as the `AWSTraceHeader` system attribute, in X-Ray's form.
#[tokio::test]
async fn the_sqs_door_turns_x_amzn_trace_id_into_aws_trace_header() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let call = |action: &'static str, body: serde_json::Value, trace: Option<&'static str>| {
        let mut req = http
            .post(format!("{}/", server.url))
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(body.to_string());
        if let Some(t) = trace {
            req = req.header("x-amzn-trace-id", t);
        }
        async move {
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{action}: {}", r.status());
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let url = call("CreateQueue", serde_json::json!({"QueueName": "traced"}), None).await;
    let url = url["QueueUrl"].as_str().unwrap().to_owned();
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let send = serde_json::json!({"QueueUrl": url, "MessageBody": "x"});
    call("SendMessage", send, Some(header)).await;
    let receive =
        serde_json::json!({"QueueUrl": url, "MessageSystemAttributeNames": ["AWSTraceHeader"]});
    let got = call("ReceiveMessage", receive, None).await;
    assert_eq!(got["Messages"][0]["Attributes"]["AWSTraceHeader"], header, "{got}");
}
