//! `GET /api/v1/connectors`: what is configured, what each connector can do, whether the
//! provider accepts its credentials, and its counters. Never shows a secret: only what the
//! registry knows about a connector's shape is listed.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{reject_unknown, Page, Params, Principal};
use super::problem::Problem;
use super::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_connectors))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Capabilities {
    /// Receives webhooks at `webhook_path`.
    pub webhook: bool,
    /// Polls the provider (a poller task runs for it).
    pub poll: bool,
    /// Sends agents' replies.
    pub send: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectorCountersView {
    pub accepted: u64,
    pub duplicate: u64,
    /// Rejected webhook deliveries by reason (`bad_signature`, `expired_timestamp` …).
    pub rejected: BTreeMap<String, u64>,
    pub normalized: u64,
    pub normalize_failed: u64,
    pub normalize_dead: u64,
    pub unsupported: u64,
    pub sent: u64,
    pub send_failed: u64,
}

/// Who polls a connector: the node holding its poll lease.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PollLeaseView {
    /// The owner's node id (host name, pid and a random suffix).
    pub owner: String,
    /// Raised at every change of owner.
    pub fence: i64,
    pub expires_at: String,
    /// The lease ran out and nobody has taken it yet (its owner stopped or died).
    pub expired: bool,
    /// The node answering this request is the owner.
    pub held_by_this_node: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectorInfo {
    pub id: String,
    pub kind: String,
    pub webhook_path: String,
    pub capabilities: Capabilities,
    /// `healthy`, or `unhealthy` after the provider refused the connector's credentials
    /// (until the next success).
    pub health: String,
    pub unhealthy_reason: Option<String>,
    pub unhealthy_since: Option<String>,
    pub counters: ConnectorCountersView,
    /// For a polling connector that has been polled: the node that holds its poll lease.
    pub poll_lease: Option<PollLeaseView>,
}

#[utoipa::path(
    get,
    path = "/connectors",
    tag = "connectors",
    summary = "Configured connectors with their health and counters",
    responses(
        (status = 200, description = "every configured connector, in config order", body = Page<ConnectorInfo>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_connectors(
    _p: Principal,
    State(s): State<AppState>,
    axum::extract::Query(q): Params,
) -> Result<Json<Page<ConnectorInfo>>, Problem> {
    reject_unknown(&q, &[])?;
    let mut leases: std::collections::HashMap<String, crate::store::LeaseRecord> = s
        .store
        .leases()
        .await?
        .into_iter()
        .map(|l| (l.name.clone(), l))
        .collect();
    let items = s
        .registry
        .iter()
        .map(|inst| {
            let c = s.metrics.connector(&inst.id);
            let health = c.and_then(|c| c.health());
            let load = |f: fn(&crate::metrics::ConnectorCounters) -> u64| c.map(f).unwrap_or(0);
            ConnectorInfo {
                id: inst.id.clone(),
                kind: inst.kind.to_string(),
                webhook_path: format!("/webhooks/{}", inst.id),
                capabilities: Capabilities {
                    webhook: inst.connector.webhook().is_some(),
                    poll: inst.connector.poller().is_some(),
                    send: inst.connector.outbound().is_some(),
                },
                health: if health.is_some() {
                    "unhealthy"
                } else {
                    "healthy"
                }
                .to_string(),
                unhealthy_reason: health.as_ref().map(|h| h.reason.clone()),
                unhealthy_since: health
                    .as_ref()
                    .map(|h| crate::store::model::rfc3339(h.since)),
                counters: ConnectorCountersView {
                    accepted: load(|c| c.accepted.load(Relaxed)),
                    duplicate: load(|c| c.duplicate.load(Relaxed)),
                    rejected: c
                        .map(|c| {
                            c.rejected()
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect()
                        })
                        .unwrap_or_default(),
                    normalized: load(|c| c.normalized.load(Relaxed)),
                    normalize_failed: load(|c| c.failed.load(Relaxed)),
                    normalize_dead: load(|c| c.dead.load(Relaxed)),
                    unsupported: load(|c| c.unsupported.load(Relaxed)),
                    sent: load(|c| c.sent.load(Relaxed)),
                    send_failed: load(|c| c.send_failed.load(Relaxed)),
                },
                poll_lease: leases
                    .remove(&inst.id)
                    .filter(|_| inst.connector.poller().is_some())
                    .map(|l| PollLeaseView {
                        held_by_this_node: l.owner == *s.node_id,
                        expired: l.expires_at < l.now,
                        owner: l.owner,
                        fence: l.fence,
                        expires_at: crate::store::model::rfc3339(l.expires_at),
                    }),
            }
        })
        .collect();
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}
