//! Triage proposal and policy routes (`/v1/triage/*`), in the shared triage vocabulary of
//! [`redrive_core::triage`]: the agent and the CLI are clients like any other.

use std::collections::BTreeMap;

use redrive_core::triage::{
    DecideRequest, NewProposal, Policy, PolicyList, Proposal, ProposalList, Status,
};
use reqwest::Method;

use crate::routes::endpoint;
use crate::transport::{decode, Retry};
use crate::{Client, Error};

impl Client {
    /// `POST /v1/triage/proposals`: stores a proposal; answers it as stored (`pending`).
    pub async fn propose(&self, proposal: &NewProposal) -> Result<Proposal, Error> {
        self.post_json(endpoint(&self.base, &["v1", "triage", "proposals"]), proposal, Retry::Once)
            .await
    }

    /// `GET /v1/triage/proposals[?status=…]`: oldest first.
    pub async fn proposals(&self, status: Option<Status>) -> Result<Vec<Proposal>, Error> {
        let mut url = endpoint(&self.base, &["v1", "triage", "proposals"]);
        if let Some(s) = status {
            url.query_pairs_mut().append_pair("status", s.as_str());
        }
        let list: ProposalList = self.get_json(url).await?;
        Ok(list.proposals)
    }

    /// `GET /v1/triage/proposals/{id}`.
    pub async fn proposal(&self, id: &str) -> Result<Proposal, Error> {
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
    ) -> Result<Proposal, Error> {
        let verb = if approve { "approve" } else { "reject" };
        let url = endpoint(&self.base, &["v1", "triage", "proposals", id, verb]);
        let body = DecideRequest { by: by.to_owned(), why: why.map(str::to_owned) };
        self.post_json(url, &body, Retry::Once).await
    }

    /// `GET /v1/triage/policies/{queue}`: the policy a person set for the queue, if any.
    pub async fn triage_policy(&self, queue: &str) -> Result<Option<Policy>, Error> {
        match self.get_json(endpoint(&self.base, &["v1", "triage", "policies", queue])).await {
            Ok(p) => Ok(Some(p)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/triage/policies`: every queue's policy.
    pub async fn triage_policies(&self) -> Result<BTreeMap<String, Policy>, Error> {
        let list: PolicyList =
            self.get_json(endpoint(&self.base, &["v1", "triage", "policies"])).await?;
        Ok(list.policies)
    }

    /// `PUT /v1/triage/policies/{queue}`: answers the policy as stored.
    pub async fn set_triage_policy(&self, queue: &str, policy: &Policy) -> Result<Policy, Error> {
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
