//! Errors as responses: `{"error": {"code", "message"}}` with the status from the one wire table
//! in [`redrive_core::Error::wire`]. Internal errors are logged and answered generically.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redrive_core::Error;
use serde_json::json;

use crate::reply::Json;

/// An [`Error`] on its way to the wire.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let wire = self.0.wire();
        if !self.0.is_public() {
            tracing::error!(error = ?self.0, "internal error");
        }
        let status = StatusCode::from_u16(wire.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({ "error": { "code": wire.code, "message": self.0.to_string() } });
        let mut resp = (status, Json(body)).into_response();
        if let Some(s) = self.0.retry_after_s() {
            resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from(s));
        }
        // For the SQS routes, whose answers `envelope` puts in SQS's shape from the error itself.
        resp.extensions_mut().insert(self.0);
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub async fn not_found() -> ApiError {
    ApiError(Error::RouteNotFound)
}

pub async fn method_not_allowed() -> ApiError {
    ApiError(Error::MethodNotAllowed)
}

/// Maps the tower limit layers' errors (load shed, timeout) to API errors.
pub async fn overload(err: tower::BoxError) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        return ApiError(Error::Timeout);
    }
    ApiError(Error::Overloaded)
}
