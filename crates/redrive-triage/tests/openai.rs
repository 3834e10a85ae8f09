//! The `openai` provider against a local HTTP server that speaks the chat-completions API with
//! scripted replies: the agent acts only on good decisions, and nothing secret reaches the model.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use redrive_triage::openai::{OpenAi, OpenAiConfig};
use redrive_triage::policy::{Mode, Policy, RateLimiter, Verdict};
use redrive_triage::provider::{decide, Decided, Provider};
use redrive_triage::{DeadCase, FailedAttempt};
use serde_json::{json, Value};

/// One scripted answer: status, content of the assistant message (or a raw body), delay.
struct Script {
    status: u16,
    body: String,
    delay: Duration,
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Script>>,
    received: Mutex<Vec<Value>>,
}

fn completion(content: &str) -> String {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 321, "completion_tokens": 45, "total_tokens": 366},
    })
    .to_string()
}

async fn chat(State(fake): State<Arc<Fake>>, body: axum::Json<Value>) -> Response {
    fake.received.lock().unwrap().push(body.0);
    let next = fake.script.lock().unwrap().pop_front();
    let Some(s) = next else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    tokio::time::sleep(s.delay).await;
    let status = StatusCode::from_u16(s.status).unwrap();
    let mut resp = (status, s.body).into_response();
    resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
    if s.status == 429 {
        resp.headers_mut().insert("retry-after", "0".parse().unwrap());
    }
    resp
}

async fn fake_server(fake: Arc<Fake>) -> String {
    let app = Router::new().route("/v1/chat/completions", post(chat)).with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn dead_case() -> DeadCase {
    DeadCase {
        queue: "payments".into(),
        body: r#"{"customer":"jane.doe@example.com","card":"4242424242424242","amount":1200}"#
            .into(),
        attributes: [("reply_to".to_owned(), "ops@example.com".to_owned())].into(),
        receive_count: 5,
        errors: vec![FailedAttempt {
            kind: "ReadTimeout".into(),
            message: "timed out calling https://api.psp.example/charges for jane.doe@example.com"
                .into(),
            detail: Some("Authorization: Bearer sk_live_51HxAbCdEf0123456789".into()),
        }],
    }
}

const GOOD: &str = r#"{"category":"transient","action":"redrive","confidence":0.92,"delay_ms":null,"patch":null,"analysis":"PSP timeouts; retry."}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_acts_only_on_good_decisions_and_secrets_never_leave() {
    let fake = Arc::new(Fake::default());
    let url = fake_server(fake.clone()).await;
    let ok = |body: String| Script { status: 200, body, delay: Duration::ZERO };
    fake.script.lock().unwrap().extend([
        // 1. a good decision
        ok(completion(GOOD)),
        // 2. malformed JSON
        ok(completion("{\"category\": \"transient\", \"action\": ")),
        // 3. schema-valid, but an action the policy does not let run alone
        ok(completion(r#"{"category":"bad_data","action":"redrive_patched","confidence":0.97,"delay_ms":null,"patch":[{"op":"replace","path":"/amount","value":12}],"analysis":"cents"}"#)),
        // 4. a timeout
        Script { status: 200, body: completion(GOOD), delay: Duration::from_secs(3) },
        // 5. 429, then success
        Script { status: 429, body: "{\"error\":{\"message\":\"Rate limit reached\"}}".into(), delay: Duration::ZERO },
        ok(completion(GOOD)),
    ]);
    let client = OpenAi::new(OpenAiConfig {
        base_url: url,
        model: "gpt-test".into(),
        api_key: Some("test-key".into()),
        timeout: Duration::from_millis(800),
        retries: 2,
    })
    .unwrap();
    let provider = Provider::OpenAi { client, model: "gpt-test".into() };
    let policy = Policy { mode: Mode::Auto, ..Policy::default() };
    let mut limiter = RateLimiter::default();
    let case = dead_case();
    let mut outcomes: Vec<(Decided, Verdict)> = Vec::new();
    for _ in 0..5 {
        let d = decide(&provider, &case, 40, &["/customer".to_owned()]).await;
        let v = d.verdict(&policy, false, &mut limiter, 0);
        outcomes.push((d, v));
    }
    let executed: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, (_, v))| *v == Verdict::Execute)
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(executed, [1, 5], "only the good decisions run: {outcomes:#?}");

    let (good, _) = &outcomes[0];
    assert_eq!((good.provider, good.prompt_tokens, good.completion_tokens), ("openai", 321, 45));
    assert_eq!(good.raw_output.as_deref(), Some(GOOD));
    let (malformed, v) = &outcomes[1];
    assert_eq!(malformed.decision.action.as_str(), "escalate");
    assert!(matches!(v, Verdict::Escalate(_)));
    assert!(matches!(outcomes[2].1, Verdict::Propose(_)), "a patch waits for a person");
    let (timed_out, v) = &outcomes[3];
    assert!(
        timed_out.fallback.as_deref().is_some_and(|f| f.contains("timed out")),
        "{timed_out:?}"
    );
    assert_eq!(timed_out.provider, "rules");
    assert!(matches!(v, Verdict::Propose(_)), "a fallback never runs alone");

    let received = fake.received.lock().unwrap();
    assert_eq!(received.len(), 6, "the 429 was retried once");
    let sent = serde_json::to_string(&*received).unwrap();
    for secret in [
        "jane.doe@example.com",
        "4242424242424242",
        "ops@example.com",
        "sk_live_51HxAbCdEf0123456789",
    ] {
        assert!(!sent.contains(secret), "{secret} reached the model");
    }
    assert!(
        sent.contains("[REDACTED]") && sent.contains("[SECRET]"),
        "placeholders are sent instead"
    );
    assert_eq!(received[0]["response_format"]["type"], "json_schema");
}
