//! Triage proposal routes. Proposals carry the triage agent's decision types, which live in
//! `redrive-triage` (a client of this crate), so they travel here as JSON values.

use serde_json::{json, Value};

use crate::routes::endpoint;
use crate::transport::Retry;
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
}
