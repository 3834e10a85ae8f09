//! The last word on error bodies: whatever answered (a handler, an axum extractor's rejection,
//! the limit layers, a caught panic), an error leaves in the caller's format: the native
//! `{"error": {"code", "message"}}` envelope, or SQS's error shape on the SQS routes. Bodies
//! that are neither (axum's plain-text rejections, empty bodies) are replaced by the error their
//! status means, in fixed words, so no Rust type or internal text reaches a client.

use std::any::Any;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use redrive_core::{limits, Error};

use crate::error::ApiError;
use crate::sqs;

/// Middleware: checks the format of every error response (successes pass untouched).
pub(crate) async fn ensure(req: Request, next: Next) -> Response {
    let sqs = sqs::protocol_of(req.method(), req.uri(), req.headers());
    let resp = next.run(req).await;
    if !resp.status().is_client_error() && !resp.status().is_server_error() {
        return resp;
    }
    let mut resp = in_format(sqs, resp).await;
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the oversized body was never read: the connection cannot carry another
        // request, so say so rather than let a client reuse it.
        resp.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
    resp
}

/// An error response in the caller's format: as it is, or replaced by what its status means.
async fn in_format(sqs: Option<sqs::Protocol>, resp: Response) -> Response {
    let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let in_format = match (sqs, content_type) {
        (None, Some(t)) => t.starts_with("application/json"),
        (Some(_), Some(t)) => t.starts_with("application/x-amz-json") || t.starts_with("text/xml"),
        (_, None) => false,
    };
    if in_format {
        return resp;
    }
    // A native error answered on an SQS route (by a layer both share): the same error, in SQS's.
    if let (Some(protocol), Some(e)) = (sqs, resp.extensions().get::<Error>()) {
        return sqs::error_response(protocol, e.clone());
    }
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap_or_default();
    tracing::debug!(%status, body = %String::from_utf8_lossy(&body), "error body replaced");
    let e = meaning(status);
    match sqs {
        Some(protocol) => sqs::error_response(protocol, e),
        None => ApiError(e).into_response(),
    }
}

/// The error an answer's status stands for, for bodies that did not say.
fn meaning(status: StatusCode) -> Error {
    match status {
        StatusCode::NOT_FOUND => Error::RouteNotFound,
        StatusCode::METHOD_NOT_ALLOWED => Error::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => {
            Error::RequestTooLarge { max: limits::REQUEST_BODY_MAX_BYTES as u64 }
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Error::Timeout,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => Error::Overloaded,
        s if s.is_client_error() => {
            Error::MalformedRequest("the request's URL, headers or body could not be read".into())
        }
        s => Error::Internal(format!("status {s} without a body")),
    }
}

/// For `CatchPanicLayer`: a panic is a bug; it is logged, and the client gets `internal`.
pub(crate) fn panicked(panic: Box<dyn Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    ApiError(Error::Internal(format!("handler panicked: {what}"))).into_response()
}
