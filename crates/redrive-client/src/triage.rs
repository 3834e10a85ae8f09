//! Triage proposal and policy routes. Proposals carry the triage agent's decision types, which live in
//! `redrive-triage` (a client of this crate), so they travel here as JSON values.

use serde_json::{json, Value};

use reqwest::Method;

use crate::routes::endpoint;
use crate::transport::{decode, Retry};
use crate::{Client, Error};

impl Client {
    /// `POST /v1/triage/proposals`: stores a proposal; answers it with its id and status.
    pub async fn propose(&self, proposal: &Value) -> Result<Value, Error> {
        self.post_json(endpoint(&self.base, &["v1", "triage", "proposals"]), proposal, Retry::Once)
            .await
    }

    /// `GET /v1/triage/proposals[?status=…]`.
    pub async fn proposals(&self, status: Option<&str>) -> Result<Value, Error> {
        let mut url = endpoint(&self.base, &["v1", "triage", "proposals"]);
        if let Some(s) = status {
            url.query_pairs_mut().append_pair("status", s);
        }
        self.get_json(url).await
    }

    /// `GET /v1/triage/proposals/{id}`.
    pub async fn proposal(&self, id: &str) -> Result<Value, Error> {
        self.get_json(endpoint(&self.base, &["v1", "triage", "proposals", id])).await
    }

    /// `POST /v1/triage/proposals/{id}/approve|reject` with who and why; approving executes the
    /// proposal's action. Answers the updated proposal.
    pub async fn decide_proposal(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        why: Option<&str>,
    ) -> Result<Value, Error> {
        let verb = if approve { "approve" } else { "reject" };
        let url = endpoint(&self.base, &["v1", "triage", "proposals", id, verb]);
        self.post_json(url, &json!({ "by": by, "why": why }), Retry::Once).await
    }

    /// `GET /v1/triage/policies/{queue}`: the policy a person set for the queue, if any.
    pub async fn triage_policy(&self, queue: &str) -> Result<Option<Value>, Error> {
        match self.get_json(endpoint(&self.base, &["v1", "triage", "policies", queue])).await {
            Ok(p) => Ok(Some(p)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/triage/policies`: every queue's policy.
    pub async fn triage_policies(&self) -> Result<Value, Error> {
        self.get_json(endpoint(&self.base, &["v1", "triage", "policies"])).await
    }

    /// `PUT /v1/triage/policies/{queue}`.
    pub async fn set_triage_policy(&self, queue: &str, policy: &Value) -> Result<Value, Error> {
        let url = endpoint(&self.base, &["v1", "triage", "policies", queue]);
        decode(self.send(Method::PUT, url, Some(policy), Retry::Idempotent, self.timeout).await?)
            .await
    }

    /// `DELETE /v1/triage/policies/{queue}`.
    pub async fn delete_triage_policy(&self, queue: &str) -> Result<(), Error> {
        let url = endpoint(&self.base, &["v1", "triage", "policies", queue]);
        self.send(Method::DELETE, url, None::<&()>, Retry::Idempotent, self.timeout).await?;
        Ok(())
    }
}
