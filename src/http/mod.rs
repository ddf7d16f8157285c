//! HTTP: webhooks, the inbox API and operations endpoints.

pub mod admin;
pub mod api;
pub mod events;
pub mod extract;
pub mod inbox;
pub mod ops;
pub mod problem;
pub mod search;
pub mod webhooks;

use std::sync::Arc;

use axum::routing::{any, get};
use axum::Router;

use crate::domain::ClaimNormalizer;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub registry: Registry,
    pub ingestor: Ingestor,
    pub metrics: Arc<Metrics>,
    pub claims: ClaimNormalizer,
    pub max_body_bytes: usize,
    /// Wakes the sender worker when a reply is queued, so it leaves at once.
    pub outbound_wake: Arc<tokio::sync::Notify>,
    /// Turns true when shutdown starts: endless responses (SSE) end, so graceful shutdown
    /// does not wait for them forever.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/{connector_id}", any(webhooks::receive))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .nest("/api/v1", api::routes())
        .fallback(ops::not_found)
        .with_state(state)
}
