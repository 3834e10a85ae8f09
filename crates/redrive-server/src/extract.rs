//! `JsonBody<T>`: a JSON body whose size-limit and parse failures are API errors (413 naming the
//! limit; 400 with the parser's reason), unlike axum's plain-text rejections. An empty body reads
//! as `{}` so that all-optional requests may omit it.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use redrive_core::{limits, Error};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(Error::RequestTooLarge { max: limits::REQUEST_BODY_MAX_BYTES as u64 })
            } else {
                ApiError(Error::MalformedRequest(e.body_text()))
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        serde_json::from_slice(bytes)
            .map(JsonBody)
            .map_err(|e| ApiError(Error::MalformedRequest(e.to_string())))
    }
}
