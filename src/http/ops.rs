use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use super::AppState;

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// How long `/readyz` waits for the database. A database that does not answer (a dead host
/// swallows packets) would otherwise hold the probe for the whole pool acquire timeout, and
/// most load balancers count a slow probe as a failure without learning why.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The database answers; a load balancer sends traffic only when it does.
pub async fn readyz(State(s): State<AppState>) -> Response {
    match tokio::time::timeout(READY_WITHIN, s.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(_)) => Problem::unavailable("database unreachable").into_response(),
        Err(_) => Problem::unavailable("database did not answer in time").into_response(),
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
