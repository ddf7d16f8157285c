use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use super::AppState;

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The database answers; a load balancer sends traffic only when it does.
pub async fn readyz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(_) => Problem::unavailable("database unreachable").into_response(),
    }
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    let q = s.store.queue_stats().await.unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&q),
    )
        .into_response()
}

pub async fn not_found() -> Problem {
    Problem::not_found("route")
}
