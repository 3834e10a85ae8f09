//! The web dashboard at `/ui`: the files of `ui/`, embedded at build time (`build.rs`), served
//! as they are. They hold no secret, so they are open like `/healthz`; every action the page
//! takes goes through the API with the key the user gives it, and the API checks its scopes.
//!
//! `REDRIVE_UI_DIR` serves the files from that directory instead, read on each request, so the
//! dashboard can be worked on without rebuilding the server.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::Shared;

static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/ui_files.rs"));

/// Scripts, styles and connections from this origin only, and never inside a frame.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn routes<B: redrive_core::Broker>() -> Router<Shared<B>> {
    Router::new()
        .route("/ui", get(|| file("index.html")))
        .route("/ui/", get(|| file("index.html")))
        .route("/ui/{*path}", get(|Path(path): Path<String>| async move { file(&path).await }))
}

async fn file(path: &str) -> Response {
    let bytes = match std::env::var_os("REDRIVE_UI_DIR") {
        Some(dir) if !path.split('/').any(|p| p == ".." || p.is_empty()) => {
            std::fs::read(std::path::Path::new(&dir).join(path)).ok()
        }
        Some(_) => None,
        None => FILES.iter().find(|(p, _)| *p == path).map(|(_, b)| b.to_vec()),
    };
    let Some(bytes) = bytes else {
        return crate::error::ApiError(redrive_core::Error::RouteNotFound).into_response();
    };
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}
