//! Admin HTTP server: `/metrics` (Prometheus text); the JSON API `/api/v1/slis`,
//! `/api/v1/gaps`, `/api/v1/exemplars`, `/api/v1/slos`, `/api/v1/canary`, `/api/v1/flags`, `/api/v1/history` (per-minute points of
//! the last hour) and `/api/v1/info` (receiver endpoints for clients); the built-in
//! dashboard (`/` and its assets, embedded); `/healthz` and `/readyz`.
//!
//! `admin.auth` guards `/metrics` and `/api/*`. The dashboard's assets hold no data and are
//! served without the token (the page asks for it when the API answers 401); the probes stay
//! open. Reads pipeline snapshots and self-telemetry; its only state is the history ring
//! ([`history`]), sampled from the snapshots.

pub mod canary;
pub mod dashboard;
pub mod exemplars;
pub mod exposition;
pub mod flags;
pub mod gaps;
pub mod history;
pub mod info;
pub mod probe;
pub mod prometheus;
pub mod slis;
pub mod slos;

use crate::report::Reader;
use crate::telemetry::Telemetry;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the admin server reads.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The read model over the pipeline whose snapshots are served.
    pub reader: Reader,
    /// Self-telemetry counters.
    pub telemetry: Arc<Telemetry>,
    /// Set once every listener is bound.
    pub ready: Arc<AtomicBool>,
    /// Canary analysis settings; `None` when off.
    pub canary: Option<crate::slo::def::CanaryConfig>,
    /// Delivery queues of the forwarders and exporters, for self-telemetry.
    pub exporters: Arc<Vec<crate::export::delivery::Queue>>,
    /// The memory budget; `None`: none.
    pub memory: Option<Arc<crate::memory::MemoryBudget>>,
    /// The bearer token `/metrics` and `/api/*` require (`admin.auth`); `None`: none.
    pub auth: Option<crate::auth::Token>,
    /// What `/api/v1/info` reports.
    pub info: Arc<info::Info>,
    /// Per-minute points of the last hour, sampled by [`history::sample_every`].
    pub history: history::SharedHistory,
}

/// The admin routes.
pub fn router(state: ApiState) -> Router {
    // Everything but the probes needs the token when `admin.auth` is set.
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/slis", get(slis_handler))
        .route("/api/v1/gaps", get(gaps_handler))
        .route("/api/v1/exemplars", get(exemplars_handler))
        .route("/api/v1/slos", get(slos_handler))
        .route("/api/v1/canary", get(canary_handler))
        .route("/api/v1/flags", get(flags_handler))
        .route("/api/v1/history", get(history_handler))
        .route("/api/v1/info", get(info_handler))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    let mut router = Router::new()
        .merge(guarded)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    for a in &dashboard::ASSETS {
        let serve =
            move |headers: axum::http::HeaderMap| async move { dashboard::serve(a, &headers) };
        router = router.route(a.path, get(serve));
    }
    router.with_state(state)
}

/// Lets a request through when it carries the admin token (or none is configured).
async fn require_token(
    State(s): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if crate::auth::allowed(s.auth.as_ref(), authorization) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response()
    }
}

/// `/metrics`: the Prometheus text format, or OpenMetrics 1.0 with exemplars when the
/// scraper's `Accept` header asks for it (Prometheus does by default).
async fn metrics(State(s): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let open_metrics = exposition::wants_open_metrics(accept);
    let mut body = prometheus::render(&s.reader.report(), &s.telemetry, open_metrics);
    prometheus::exporters(&mut body, &s.exporters);
    prometheus::memory(&mut body, s.memory.as_deref());
    if open_metrics {
        let body = exposition::open_metrics(&body);
        (
            [(header::CONTENT_TYPE, exposition::OPEN_METRICS_CONTENT_TYPE)],
            body,
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, exposition::TEXT_CONTENT_TYPE)],
            body,
        )
            .into_response()
    }
}

async fn slis_handler(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let window = q.get("window").map(String::as_str).unwrap_or("all");
    match slis::render(&s.reader.report(), window) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(msg) => json_error(StatusCode::BAD_REQUEST, &msg),
    }
}

async fn exemplars_handler(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let body = exemplars::render(
        &s.reader.report(),
        q.get("service").map(String::as_str),
        q.get("feature").map(String::as_str),
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn flags_handler(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let window = q.get("window").map(String::as_str).unwrap_or("5m");
    let service = q
        .get("service")
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    match flags::render(&s.reader.report(), window, service) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(flags::FlagsError::BadRequest(msg)) => json_error(StatusCode::BAD_REQUEST, &msg),
        Err(flags::FlagsError::Off) => json_error(
            StatusCode::NOT_FOUND,
            "feature flags are not read (flags.enabled is false)",
        ),
    }
}

async fn slos_handler(State(s): State<ApiState>) -> Response {
    let body = slos::render(&s.reader.report());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn canary_handler(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let answer = tokio::task::spawn_blocking(move || {
        canary::render(s.reader.pipeline(), s.canary.as_ref(), &q)
    })
    .await;
    match answer {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Err(canary::CanaryError::BadRequest(msg))) => json_error(StatusCode::BAD_REQUEST, &msg),
        Ok(Err(canary::CanaryError::Disabled)) => json_error(
            StatusCode::NOT_FOUND,
            "canary analysis is off (canary.attribute is empty)",
        ),
        Ok(Err(canary::CanaryError::FlagsOff)) => json_error(
            StatusCode::NOT_FOUND,
            "feature flags are not read (flags.enabled is false)",
        ),
        Ok(Err(canary::CanaryError::Busy)) => json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many canary queries at once; retry",
        ),
        Ok(Err(canary::CanaryError::Unavailable)) | Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline did not answer in time; retry",
        ),
    }
}

async fn gaps_handler(State(s): State<ApiState>) -> Response {
    let body = gaps::render(&s.reader.report());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn json_error(code: StatusCode, msg: &str) -> Response {
    let body = serde_json::to_vec(&serde_json::json!({ "error": msg })).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn history_handler(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let minutes = match history::parse_window(q.get("window").map(String::as_str)) {
        Ok(m) => m,
        Err(msg) => return json_error(StatusCode::BAD_REQUEST, &msg),
    };
    let view = s.reader.pipeline().view();
    let names = s.reader.pipeline().classifier().label_names();
    let body = s
        .history
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .render(&view, minutes, &names);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn info_handler(State(s): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let body = info::render(&s.info, host);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn readyz(State(s): State<ApiState>) -> Response {
    if s.ready.load(Ordering::Acquire) && s.reader.pipeline().is_running() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}
