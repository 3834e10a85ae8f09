//! redrive's HTTP server: the native JSON API under `/v1`, health and readiness, Prometheus
//! metrics, all on one port, over a store that implements [`redrive_core::Broker`].
//!
//! # Layout
//! - [`error`]: turning [`redrive_core::Error`] into responses through its one wire table.
//! - `envelope`: every error response in the caller's format, whatever produced it.
//! - `reply`: JSON replies, written into one buffer.
//! - `extract`: the JSON body extractor (size limit and parse errors as API errors), reading
//!   through `strict` (objects only as objects, integral floats as integers).
//! - `native`: one file per group of native routes.
//! - `sqs`: the SQS API (JSON 1.0 and Query protocols) over the same queues.
//! - [`triage`]: triage policies, and the proposals a person approves or rejects.
//! - `metrics`: the `/metrics` page.
//! - `overload`: the server-wide budget of requests in flight, the body read deadline, and long
//!   polls per caller, abandoned when their client goes away.
//! - [`serve`]: the request limits, and graceful shutdown over `conn`'s accept loop (the
//!   connection cap and idle timeout, HTTP versions, TLS), then of the background tasks
//!   ([`Background`]).
//! - [`tls`]: the certificate, key and client CA files, loaded into rustls and reloaded.
//! - [`at_rest`]: encryption at rest, a [`Broker`] wrapper that seals job content.

pub mod at_rest;
mod audit;
pub mod auth;
mod conn;
mod envelope;
pub mod error;
mod extract;
pub mod history;
mod keys;
pub mod metrics;
mod native;
mod overload;
pub mod receipts;
mod reply;
pub mod sigv4;
pub mod sqs;
mod strict;
pub mod tls;
pub mod traces;
pub mod triage;
mod ui;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use redrive_core::{limits, Broker};
use tower::ServiceBuilder;

pub use conn::{open_max_for, ConnLimits, Listener, Transport};
pub use overload::{Overload, OverloadLimits};

/// What every handler sees: the store (any [`Broker`]) and the server's own state.
pub struct AppState<B> {
    pub broker: B,
    /// Every series of `/metrics` (see [`metrics`]).
    pub metrics: metrics::Metrics,
    pub sqs: sqs::SqsSettings,
    pub moves: sqs::MoveTasks,
    /// Recent FIFO receive answers by `ReceiveRequestAttemptId`, for retries.
    pub receive_attempts: sqs::ReceiveAttempts,
    pub proposals: triage::Proposals,
    pub policies: triage::Policies,
    /// Tasks that outlive the request that started them.
    pub background: Background,
    /// Whether requests need a key, and each key's requests this second.
    pub auth: auth::AuthSettings,
    pub rates: auth::KeyRates,
    /// Requests in flight and long polls open, and their limits.
    pub overload: Overload,
    /// Recent per-queue samples for the dashboard's charts.
    pub history: history::History,
    /// Whether job spans are exported, and how attempts relate to their creation context.
    pub traces: traces::Traces,
    auth_failures: audit::Failures,
    /// The key receipts are signed with, read from the store on first use.
    receipt_key: tokio::sync::OnceCell<receipts::ReceiptKey>,
}

impl<B: Broker> AppState<B> {
    pub fn new(broker: B, sqs: sqs::SqsSettings) -> AppState<B> {
        AppState {
            broker,
            metrics: metrics::Metrics::default(),
            sqs,
            moves: sqs::MoveTasks::default(),
            receive_attempts: sqs::ReceiveAttempts::default(),
            proposals: triage::Proposals::default(),
            policies: triage::Policies::default(),
            background: Background::default(),
            auth: auth::AuthSettings::default(),
            rates: auth::KeyRates::default(),
            overload: Overload::default(),
            history: history::History::default(),
            traces: traces::Traces::default(),
            auth_failures: audit::Failures::default(),
            receipt_key: tokio::sync::OnceCell::new(),
        }
    }

    /// The store's receipt signing key (see [`receipts`]).
    pub async fn receipts(&self) -> redrive_core::Result<&receipts::ReceiptKey> {
        self.receipt_key.get_or_try_init(|| receipts::ReceiptKey::load(&self.broker)).await
    }
}

/// Tasks that outlive the request that started them (SQS message moves), and the move task
/// sweeper [`serve_with`] starts: each watches `stopping` and ends at its next step once it is
/// cancelled; [`serve_with`] cancels it after the HTTP drain and waits for the tracked tasks,
/// for a bounded time.
#[derive(Default)]
pub struct Background {
    pub stopping: tokio_util::sync::CancellationToken,
    pub tasks: tokio_util::task::TaskTracker,
}

impl Background {
    /// Cancels every task and waits for them to end, at most `bound`; `false` if some did not.
    pub async fn stop(&self, bound: Duration) -> bool {
        self.stopping.cancel();
        self.tasks.close();
        tokio::time::timeout(bound, self.tasks.wait()).await.is_ok()
    }
}

pub type Shared<B> = Arc<AppState<B>>;

/// The whole HTTP surface over `state`.
pub fn router<B: Broker>(state: Shared<B>) -> Router {
    // Requests in flight are counted server-wide by `overload::admit`, outside this layer.
    let limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(error::overload))
        .timeout(Duration::from_millis(limits::REQUEST_TIMEOUT_MS));
    native::routes()
        .merge(sqs::routes())
        .merge(triage::routes())
        .route("/healthz", get(native::health::healthz))
        .route("/readyz", get(native::health::readyz::<B>))
        .route("/metrics", get(metrics::render::<B>))
        .merge(keys::routes())
        .merge(ui::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require::<B>))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count::<B>))
        .layer(axum::middleware::from_fn(traces::log_context))
        .layer(DefaultBodyLimit::max(limits::REQUEST_BODY_MAX_BYTES))
        .layer(limits)
        .layer(axum::middleware::from_fn_with_state(state.clone(), overload::admit::<B>))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(envelope::panicked))
        .layer(axum::middleware::from_fn(envelope::ensure))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish (at
/// most `drain`), stops the background tasks (at most `drain` again), and returns. The caller shuts the engine down afterwards. Connections are
/// bounded by [`ConnLimits::from_process`].
pub async fn serve<B: Broker>(
    listener: impl Into<Listener>,
    state: Shared<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    serve_with(listener, state, shutdown, drain, ConnLimits::from_process()).await
}

/// [`serve`] with explicit connection limits.
pub async fn serve_with<B: Broker>(
    listener: impl Into<Listener>,
    state: Shared<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
    limits: ConnLimits,
) -> std::io::Result<()> {
    let app = router(state.clone());
    // Resumes the move tasks whose server stopped or died, this one's last run included.
    sqs::MoveTasks::spawn_sweeper(&state);
    history::History::spawn_sampler(&state);
    // Long polls would otherwise hold the drain open for up to their wait time.
    let drained = state.clone();
    let release_long_polls = async move {
        if let Err(e) = drained.broker.drain().await {
            tracing::warn!(error = %e, "could not release long polls");
        }
    };
    conn::run(listener.into(), app, limits, shutdown, release_long_polls, drain).await;
    if !state.background.stop(drain).await {
        tracing::warn!(tasks = state.background.tasks.len(), "background tasks still running");
    }
    // Once more, for what the last requests counted.
    if let Err(e) = state.broker.drain().await {
        tracing::warn!(error = %e, "could not write the store's last counts");
    }
    Ok(())
}
