//! Choosing a decision for a group: the rules provider, or a model with the rules as the fallback.
//! What is sent to a model is always redacted; a model's output that does not parse becomes an
//! escalation; a provider failure falls back to the rules, and a fallback never runs on its own.

use serde::Serialize;

use crate::model::{Action, DeadCase, Decision};
use crate::openai::{self, OpenAi};
use crate::policy::{Policy, RateLimiter, Verdict};
use crate::redact::redact_case;
use crate::rules;

pub enum Provider {
    Rules,
    OpenAi { client: OpenAi, model: String },
}

/// A decision with where it came from, for the audit record.
#[derive(Clone, Debug, Serialize)]
pub struct Decided {
    pub decision: Decision,
    /// `rules` or `openai`.
    pub provider: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<&'static str>,
    /// What the model answered, verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Set when the provider failed and the rules decided instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Whether the policy may execute it without a person (not after a fallback).
    pub may_auto: bool,
}

impl Decided {
    /// The policy's verdict, except that a decision the rules made because the model failed is
    /// never executed without a person.
    pub fn verdict(
        &self,
        policy: &Policy,
        auto_redriven_before: bool,
        limiter: &mut RateLimiter,
        now: u64,
    ) -> Verdict {
        match crate::policy::verdict(policy, &self.decision, auto_redriven_before, limiter, now) {
            Verdict::Execute if !self.may_auto => Verdict::Propose(format!(
                "decided by the rules after the model failed ({})",
                self.fallback.as_deref().unwrap_or("unknown error")
            )),
            v => v,
        }
    }

    fn rules(case: &DeadCase) -> Decided {
        Decided {
            decision: rules::decide(case),
            provider: "rules",
            model: None,
            prompt_version: None,
            raw_output: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            fallback: None,
            may_auto: true,
        }
    }
}

/// Decides for a group represented by `case` (`group_size` jobs); `pointers` are the queue's
/// configured JSON pointers to redact.
pub async fn decide(
    provider: &Provider,
    case: &DeadCase,
    group_size: usize,
    pointers: &[String],
) -> Decided {
    let (client, model) = match provider {
        Provider::Rules => return Decided::rules(case),
        Provider::OpenAi { client, model } => (client, model),
    };
    let redacted = redact_case(case, pointers);
    match client.decide(&redacted, group_size).await {
        Ok(reply) => {
            let decision = reply.decision.unwrap_or_else(|| Decision {
                category: rules::decide(case).category,
                action: Action::Escalate,
                confidence: 0.0,
                delay_ms: None,
                patch: None,
                analysis: "The model's answer did not parse into the decision schema; escalated."
                    .into(),
            });
            Decided {
                decision,
                provider: "openai",
                model: Some(model.clone()),
                prompt_version: Some(openai::PROMPT_VERSION),
                raw_output: Some(reply.raw),
                prompt_tokens: reply.prompt_tokens,
                completion_tokens: reply.completion_tokens,
                fallback: None,
                may_auto: true,
            }
        }
        Err(e) => Decided {
            fallback: Some(e.to_string()),
            may_auto: false,
            model: Some(model.clone()),
            ..Decided::rules(case)
        },
    }
}
