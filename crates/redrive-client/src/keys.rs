//! API keys and the audit log (`/v1/keys`, `/v1/audit`; the `admin` scope). Answers are the
//! server's JSON as it is: key listings and audit entries are for people and scripts.

use reqwest::Method;
use serde_json::{json, Value};

use crate::routes::endpoint;
use crate::transport::{decode, Retry};
use crate::{Client, Error};

impl Client {
    /// `POST /v1/keys`: a new key with `ACTION:QUEUE_GLOB` grants; the answer holds its
    /// `secret` and `token`, shown this once.
    pub async fn create_key(
        &self,
        name: &str,
        allow: &[String],
        expires_at_ms: Option<u64>,
        rate_per_s: Option<u32>,
    ) -> Result<Value, Error> {
        let mut body = json!({"name": name, "allow": allow});
        if let Some(t) = expires_at_ms {
            body["expires_at"] = json!(t);
        }
        if let Some(r) = rate_per_s {
            body["rate_per_s"] = json!(r);
        }
        self.post_json(endpoint(&self.base, &["v1", "keys"]), &body, Retry::Once).await
    }

    /// `GET /v1/keys`: every key, without secrets.
    pub async fn keys(&self) -> Result<Value, Error> {
        self.get_json(endpoint(&self.base, &["v1", "keys"])).await
    }

    /// `DELETE /v1/keys/{id}`: revokes the key on every server of the store at once.
    pub async fn revoke_key(&self, id: &str) -> Result<Value, Error> {
        let url = endpoint(&self.base, &["v1", "keys", id]);
        decode(self.send(Method::DELETE, url, None::<&()>, Retry::Idempotent, self.timeout).await?)
            .await
    }

    /// `GET /v1/audit?limit=N`: the newest audit entries, oldest first.
    pub async fn audit(&self, limit: usize) -> Result<Value, Error> {
        let mut url = endpoint(&self.base, &["v1", "audit"]);
        url.query_pairs_mut().append_pair("limit", &limit.to_string());
        self.get_json(url).await
    }
}
