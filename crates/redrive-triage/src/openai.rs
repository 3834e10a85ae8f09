//! The `openai` provider: any OpenAI-compatible chat-completions endpoint (OpenAI, Azure, vLLM,
//! Ollama, llama.cpp) asked for a decision in JSON-schema structured output. It only ever sees
//! redacted cases. Output that does not parse into the closed schema is not a decision: the
//! caller escalates. Transport failures (timeouts, exhausted retries on 429/5xx) are errors: the
//! caller falls back to the rules provider. Token counts are returned for the audit record.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use redrive_core::limits;

use crate::model::{Action, Category, DeadCase, Decision};

/// Bumped whenever the prompt changes; recorded with every decision.
pub const PROMPT_VERSION: &str = "triage-v1";

#[derive(Clone)]
pub struct OpenAiConfig {
    /// E.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// Retries after a 429 or 5xx (with backoff, honoring `Retry-After`).
    pub retries: u32,
}

/// Debug output without the API key.
impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// What the model answered.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelReply {
    /// `None` when the output did not parse into a valid decision.
    pub decision: Option<Decision>,
    pub raw: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ProviderError {
    Timeout,
    /// The last status after the retries ran out, or a non-retryable one.
    Status(u16, String),
    Transport(String),
    /// The reply was not a chat completion at all.
    Protocol(String),
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderError::Timeout => write!(f, "the model endpoint timed out"),
            ProviderError::Status(s, body) => write!(f, "the model endpoint answered {s}: {body}"),
            ProviderError::Transport(e) => write!(f, "cannot reach the model endpoint: {e}"),
            ProviderError::Protocol(e) => write!(f, "not a chat completion: {e}"),
        }
    }
}

impl std::error::Error for ProviderError {}

pub struct OpenAi {
    http: reqwest::Client,
    cfg: OpenAiConfig,
}

const SYSTEM: &str = "You triage dead jobs of a job queue. Each job exhausted its retries. \
Read the error history and the payload and decide, for the whole group of identical failures: \
category (transient, rate_limited, dependency_down, bad_data, poison, bug, config, unknown) and \
action (redrive, redrive_patched, escalate, hold). Use redrive_patched only with an RFC 6902 \
JSON Patch that mechanically repairs the payload. Prefer escalate when unsure. Secrets were \
replaced with placeholders such as [EMAIL] and [SECRET]; never guess them. Answer with JSON only.";

fn schema() -> Value {
    let categories: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    let actions: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["category", "action", "confidence", "delay_ms", "patch", "analysis"],
        "properties": {
            "category": {"type": "string", "enum": categories},
            "action": {"type": "string", "enum": actions},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "delay_ms": {"type": ["integer", "null"], "minimum": 0},
            "patch": {"type": ["array", "null"], "items": {"type": "object"}},
            "analysis": {"type": "string"}
        }
    })
}

/// The user message: the (already redacted) representative job and the group's size.
pub fn prompt(case: &DeadCase, group_size: usize) -> String {
    let attempts: Vec<Value> = case
        .errors
        .iter()
        .map(|e| json!({"type": e.kind, "message": e.message, "detail": e.detail}))
        .collect();
    json!({
        "queue": case.queue,
        "jobs_in_group": group_size,
        "receive_count": case.receive_count,
        "attempts": attempts,
        "body": case.body,
        "attributes": case.attributes,
    })
    .to_string()
}

/// Parses the model's content into a decision, or `None` if it is not one we may act on.
pub fn parse_decision(content: &str) -> Option<Decision> {
    let d: Decision = serde_json::from_str(content.trim()).ok()?;
    let valid = (0.0..=1.0).contains(&d.confidence)
        && match d.action {
            Action::RedrivePatched => {
                d.patch.as_ref().is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty()))
            }
            _ => true,
        };
    valid.then_some(d)
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl OpenAi {
    pub fn new(cfg: OpenAiConfig) -> Result<OpenAi, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| ProviderError::Transport(e.to_string()))?;
        Ok(OpenAi { http, cfg })
    }

    /// Asks for a decision on a group, represented by one redacted case.
    pub async fn decide(
        &self,
        case: &DeadCase,
        group_size: usize,
    ) -> Result<ModelReply, ProviderError> {
        let body = json!({
            "model": self.cfg.model,
            "temperature": 0,
            "max_tokens": limits::TRIAGE_MODEL_REPLY_TOKENS_MAX,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": prompt(case, group_size)},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "triage_decision", "strict": true, "schema": schema()},
            },
        });
        let url = format!("{}/chat/completions", self.cfg.base_url.trim_end_matches('/'));
        let mut attempt = 0;
        loop {
            let mut req = self.http.post(&url).json(&body);
            if let Some(key) = &self.cfg.api_key {
                req = req.bearer_auth(key);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if e.is_timeout() => return Err(ProviderError::Timeout),
                Err(e) => return Err(ProviderError::Transport(e.to_string())),
            };
            let status = resp.status().as_u16();
            if status == 429 || status >= 500 {
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|s| Duration::from_millis(s.saturating_mul(1000)))
                    .unwrap_or(Duration::from_millis(
                        limits::TRIAGE_RETRY_BACKOFF_BASE_MS << attempt.min(5),
                    ))
                    .min(Duration::from_millis(limits::TRIAGE_MODEL_RETRY_WAIT_MAX_MS));
                let text = read_bounded(resp).await.unwrap_or_default();
                if attempt >= self.cfg.retries {
                    return Err(ProviderError::Status(status, text));
                }
                attempt += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            let text = read_bounded(resp).await?;
            if !(200..300).contains(&status) {
                return Err(ProviderError::Status(status, text));
            }
            let c: Completion =
                serde_json::from_str(&text).map_err(|e| ProviderError::Protocol(e.to_string()))?;
            let raw =
                c.choices.into_iter().next().and_then(|c| c.message.content).unwrap_or_default();
            let usage = c.usage.unwrap_or(Usage { prompt_tokens: 0, completion_tokens: 0 });
            return Ok(ModelReply {
                decision: parse_decision(&raw),
                raw,
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
            });
        }
    }
}

/// The reply's body as text, refused past `TRIAGE_MODEL_REPLY_BYTES_MAX` (read chunk by chunk,
/// so a runaway endpoint costs at most that much memory).
async fn read_bounded(mut resp: reqwest::Response) -> Result<String, ProviderError> {
    let max = limits::TRIAGE_MODEL_REPLY_BYTES_MAX;
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ProviderError::Protocol(format!("the reply is over {max} bytes")));
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > max => {
                return Err(ProviderError::Protocol(format!("the reply is over {max} bytes")));
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(ProviderError::Timeout),
            Err(e) => return Err(ProviderError::Transport(e.to_string())),
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_api_key() {
        let cfg = OpenAiConfig {
            base_url: "http://127.0.0.1:1/v1".into(),
            model: "m".into(),
            api_key: Some("sk-SECRET-0001".into()),
            timeout: Duration::from_secs(1),
            retries: 0,
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("sk-SECRET-0001") && shown.contains("[redacted]"), "{shown}");
    }
}
