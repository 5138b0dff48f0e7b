//! `opsdeck serve`: a host over HTTP. [`app`] builds the router from a state, so tests drive it
//! on a loopback socket or without one; every response wears the `{"data", "error"}`
//! envelope; control routes are rate limited per token and go down the host's one control
//! path, which checks the role and audits them; requests without a valid token are audited
//! here.

mod assets;
pub mod auth;
pub mod cache;
pub mod denials;
pub mod error;
pub mod listen;
pub mod metrics;
mod routes;
mod sse;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::client::Embedded;
pub use crate::config::ServerConfig;
use crate::host::Host;
pub use listen::serve;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub host: Host,
    pub backend: Embedded,
    pub config: Arc<ServerConfig>,
    pub rate: Arc<auth::RateLimiter>,
    /// Read requests per token.
    pub reads: Arc<auth::RateLimiter>,
    /// Requests without a valid token, per client address.
    pub anon_rate: Arc<auth::RateLimiter>,
    /// Denials of such requests, folded per address and minute.
    pub denials: Arc<denials::DenialFold>,
    /// Refuse every control action whatever the token.
    pub read_only: bool,
    /// Answers to repeated reads, by store generation.
    pub pages: Arc<cache::PageCache>,
    /// Events made into frames once for every stream.
    pub event_frames: Arc<cache::EventFrames>,
    /// Open SSE streams, for `/metrics` and the cap.
    pub sse_clients: Arc<AtomicU64>,
    /// Open SSE streams per token, for its cap.
    pub sse_by_token: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// Cancelled when the server stops, so event streams end and shutdown is not held open.
    pub stop: tokio_util::sync::CancellationToken,
    pub stages: metrics::StageMetrics,
}

impl AppState {
    /// Must be called inside a tokio runtime: it starts counting stage attempts.
    pub fn new(host: Host, config: ServerConfig) -> AppState {
        let stages = metrics::StageMetrics::default();
        stages.collect(&host);
        let state = AppState {
            stages,
            backend: Embedded::new(host.clone()).with_horizon(config.resume_horizon),
            host,
            rate: Arc::new(auth::RateLimiter::per_minute(config.rate_limit)),
            reads: Arc::new(auth::RateLimiter::per_minute(config.read_rate_limit)),
            anon_rate: Arc::new(auth::RateLimiter::per_minute(config.anon_rate_limit)),
            denials: Arc::default(),
            config: Arc::new(config),
            read_only: false,
            pages: Arc::default(),
            event_frames: Arc::default(),
            sse_clients: Arc::new(AtomicU64::new(0)),
            sse_by_token: Arc::default(),
            stop: tokio_util::sync::CancellationToken::new(),
        };
        state.start_minutes();
        state
    }

    /// Once a minute: writes the folded denials and forgets addresses the limits no longer
    /// need, so neither grows with the number of clients ever seen.
    fn start_minutes(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            tick.tick().await;
            loop {
                tokio::select! {
                    () = me.stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                me.flush_denials().await;
            }
            me.flush_denials().await;
        });
    }

    /// Writes the denials counted since each address's first record this minute.
    pub async fn flush_denials(&self) {
        for rec in self.denials.flush(auth::now_ts()) {
            self.host.record_denial(rec).await;
        }
        self.anon_rate.forget_idle();
        self.reads.forget_idle();
        self.rate.forget_idle();
    }
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(metrics::scrape))
        .route("/v1/overview", get(routes::overview))
        .route("/v1/pipelines", get(routes::pipelines))
        .route("/v1/pipelines/{name}", get(routes::pipeline))
        .route("/v1/pipelines/{name}/runs", post(routes::start_run))
        .route("/v1/pipelines/{name}/stats", get(assets::pipeline_stats))
        .route("/v1/runs", get(routes::runs))
        .route("/v1/runs/{id}", get(routes::run))
        .route("/v1/compare", get(routes::compare))
        .route("/v1/assets", get(assets::list))
        .route(
            "/v1/assets/{name}",
            get(assets::show)
                .post(assets::put)
                .layer(DefaultBodyLimit::max(limit.max(assets::BODY_LIMIT))),
        )
        .route("/v1/assets/{name}/pin", post(assets::pin))
        .route("/v1/assets/{name}/rollback", post(assets::rollback))
        .route("/v1/runs/{id}/cancel", post(routes::cancel_run))
        .route("/v1/runs/{id}/retry", post(routes::retry_run))
        .route("/v1/runs/{id}/resume", post(routes::resume_run))
        .route("/v1/runs/{id}/stages/{stage}", get(routes::stage_io))
        .route("/v1/dlq", get(routes::dlq))
        .route("/v1/dlq/{id}", get(routes::dlq_entry))
        .route("/v1/dlq/{id}/requeue", post(routes::requeue))
        .route("/v1/dlq/{id}/discard", post(routes::discard))
        .route("/v1/canaries", get(routes::canaries))
        .route("/v1/canaries/{name}", get(routes::canary))
        .route("/v1/canaries/{name}/series", get(routes::canary_series))
        .route("/v1/canaries/{name}/actions", post(routes::canary_action))
        .route(
            "/v1/canaries/{name}/observations",
            post(routes::observations),
        )
        .route("/v1/canaries/{name}/weight", get(routes::canary_weight))
        .route("/v1/audit", get(routes::audit))
        .route("/v1/workers", get(routes::workers))
        .route("/v1/events", get(routes::events))
        .route("/v1/events/log", get(routes::events_log))
        .route("/v1/canaries/{name}/fault", post(routes::fault))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::wrong_method)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::local_only,
        ))
        .with_state(state)
}
