//! The client's error type, and the decoding of a server error reply
//! (`{"error":{"code","message"}}` with a 4xx/5xx status) into it.

use std::fmt;

use serde::Deserialize;

/// What went wrong with a call. Server errors keep the server's code and message, so a caller can
/// match on the variant for the cases it must handle and show the text for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the request (any error status without a more specific variant).
    Api { status: u16, code: String, message: String },
    /// The lease behind a receipt ended: the job was acked, failed, expired or revoked.
    StaleReceipt,
    /// The queue or job does not exist (404).
    NotFound { code: String, message: String },
    /// A job or the request is over a size limit (413).
    TooLarge { code: String, message: String },
    /// The server is overloaded or at a limit (503/429); retry later.
    Unavailable { status: u16, code: String, message: String },
    /// The request did not get an answer: connection refused, reset, timed out.
    Transport(String),
    /// The server answered with something that is not the expected JSON.
    Decode(String),
    /// The server URL given to [`crate::Client::new`] is not an `http(s)://` URL.
    InvalidUrl(String),
    /// A CA file or client certificate given to [`crate::ClientBuilder`] cannot be read or used.
    Tls(String),
}

impl Error {
    /// The server's error code (`queue_not_found`, `stale_receipt`, …) when the server answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. }
            | Error::NotFound { code, .. }
            | Error::TooLarge { code, .. }
            | Error::Unavailable { code, .. } => Some(code),
            Error::StaleReceipt => Some("stale_receipt"),
            Error::Transport(_) | Error::Decode(_) | Error::InvalidUrl(_) | Error::Tls(_) => None,
        }
    }

    /// Decodes an error reply. A body that is not the server's error shape (a proxy's HTML page,
    /// say) still yields an error, coded `http_<status>`, with the start of the body as message.
    pub(crate) fn from_reply(status: u16, body: &[u8]) -> Error {
        #[derive(Deserialize)]
        struct Envelope {
            error: Detail,
        }
        #[derive(Deserialize)]
        struct Detail {
            code: String,
            message: String,
        }
        let (code, message) = match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => (error.code, error.message),
            Err(_) => (format!("http_{status}"), excerpt(body)),
        };
        match status {
            _ if code == "stale_receipt" => Error::StaleReceipt,
            404 => Error::NotFound { code, message },
            413 => Error::TooLarge { code, message },
            429 | 503 => Error::Unavailable { status, code, message },
            _ => Error::Api { status, code, message },
        }
    }
}

/// The first line of a non-JSON body, bounded, for an error message.
fn excerpt(body: &[u8]) -> String {
    const EXCERPT_CHARS_MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(empty body)");
    line.chars().take(EXCERPT_CHARS_MAX).collect()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api { code, message, .. }
            | Error::NotFound { code, message }
            | Error::TooLarge { code, message }
            | Error::Unavailable { code, message, .. } => write!(f, "{message} ({code})"),
            Error::StaleReceipt => {
                write!(
                    f,
                    "the receipt's lease has ended: expired, completed, or revoked (stale_receipt)"
                )
            }
            Error::Transport(why) => write!(f, "no answer from the server: {why}"),
            Error::Decode(why) => write!(f, "unexpected reply from the server: {why}"),
            Error::InvalidUrl(why) => write!(f, "invalid server URL {why}"),
            Error::Tls(why) => write!(f, "TLS settings: {why}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, code: &str, message: &str) -> Error {
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        Error::from_reply(status, body.to_string().as_bytes())
    }

    #[test]
    fn maps_statuses_and_codes_to_variants() {
        assert_eq!(reply(409, "stale_receipt", "gone"), Error::StaleReceipt);
        assert!(matches!(reply(404, "job_not_found", "x"), Error::NotFound { .. }));
        assert!(matches!(reply(413, "message_too_large", "x"), Error::TooLarge { .. }));
        assert!(matches!(reply(503, "overloaded", "x"), Error::Unavailable { status: 503, .. }));
        assert!(matches!(
            reply(429, "limit_exceeded", "x"),
            Error::Unavailable { status: 429, .. }
        ));
        assert!(matches!(reply(400, "invalid_parameter", "x"), Error::Api { status: 400, .. }));
        assert!(matches!(reply(409, "queue_exists", "x"), Error::Api { status: 409, .. }));
    }

    #[test]
    fn displays_message_then_code() {
        let e = reply(404, "queue_not_found", "queue \"x\" does not exist");
        assert_eq!(e.to_string(), "queue \"x\" does not exist (queue_not_found)");
        assert_eq!(e.code(), Some("queue_not_found"));
    }

    #[test]
    fn non_json_bodies_still_give_a_coded_error() {
        let e = Error::from_reply(502, b"\n<html>Bad Gateway</html>\n");
        assert_eq!(
            e,
            Error::Api {
                status: 502,
                code: "http_502".into(),
                message: "<html>Bad Gateway</html>".into()
            }
        );
        let e = Error::from_reply(503, b"");
        assert_eq!(e.code(), Some("http_503"));
        assert!(e.to_string().contains("empty body"));
    }
}
