//! `POST /webhooks/{connector_id}`: look up the connector, verify over the raw bytes, parse,
//! store durably (group commit), and only then answer 2xx.

use std::sync::atomic::Ordering::Relaxed;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use switchboard_core::{InboundRequest, Ingress, IngressError, VerifyError};

use super::problem::Problem;
use super::AppState;
use crate::ingest::IngestError;
use crate::store::{now_ms, InsertOutcome, NewRawEvent};

pub async fn receive(
    State(s): State<AppState>,
    Path(connector_id): Path<String>,
    req: Request,
) -> Response {
    let Some(inst) = s.registry.get(&connector_id).cloned() else {
        s.metrics.unknown_connector.fetch_add(1, Relaxed);
        return Problem::not_found("connector").into_response();
    };
    let Some(hook) = inst.connector.webhook() else {
        return Problem::not_found("webhook endpoint for this connector").into_response();
    };
    let reject = |reason: &'static str, p: Problem| {
        s.metrics.reject(&connector_id, reason);
        tracing::info!(connector_id = %connector_id, reason, "webhook rejected");
        p.into_response()
    };

    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            Some(format!("body exceeds {} bytes", s.max_body_bytes)),
        )
    };
    if declared.is_some_and(|n| n > s.max_body_bytes as u64) {
        return reject("too_large", too_large());
    }
    let body = match axum::body::to_bytes(Body::new(body), s.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => return reject("too_large", too_large()),
    };

    let now = now_ms();
    let inbound = InboundRequest {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body: &body,
        now: now / 1000,
    };
    let verified = match hook.verify(&inbound) {
        Ok(v) => v,
        Err(VerifyError::MethodNotAllowed) => {
            return reject(
                "method_not_allowed",
                Problem::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    Some("use POST".to_string()),
                ),
            )
        }
        Err(e @ VerifyError::Forbidden(_)) => {
            return reject(
                e.reason(),
                Problem::new(StatusCode::FORBIDDEN, e.reason(), Some(e.to_string())),
            )
        }
        Err(e) => {
            return reject(
                e.reason(),
                Problem::new(StatusCode::UNAUTHORIZED, e.reason(), Some(e.to_string())),
            )
        }
    };
    let events = match hook.parse(verified) {
        Ok(Ingress::Reply(r)) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            return (status, [(header::CONTENT_TYPE, r.content_type)], r.body).into_response();
        }
        Ok(Ingress::Events(evs)) => evs,
        Err(e) => {
            let code = match e {
                IngressError::Malformed(_) => "malformed_body",
                IngressError::MissingField(_) => "missing_field",
            };
            return reject(code, Problem::bad_request(code, e.to_string()));
        }
    };
    let custom_ack = |hook: &dyn switchboard_core::WebhookIngress| {
        hook.accepted_reply().map(|r| {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            (status, [(header::CONTENT_TYPE, r.content_type)], r.body).into_response()
        })
    };
    if events.is_empty() {
        if let Some(r) = custom_ack(hook) {
            return r;
        }
        return (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ignored" })),
        )
            .into_response();
    }
    let rows: Vec<NewRawEvent> = events
        .into_iter()
        .map(|e| NewRawEvent::received(&connector_id, e, now))
        .collect();
    match s.ingestor.submit(rows).await {
        Ok(outcomes) => {
            let counters = s.metrics.connector(&connector_id);
            let accepted = outcomes
                .iter()
                .filter(|o| matches!(o, InsertOutcome::Accepted(_)))
                .count();
            let duplicate = outcomes.len() - accepted;
            if let Some(c) = counters {
                c.accepted.fetch_add(accepted as u64, Relaxed);
                c.duplicate.fetch_add(duplicate as u64, Relaxed);
            }
            if let Some(r) = custom_ack(hook) {
                return r;
            }
            let status = if accepted == 0 {
                "duplicate"
            } else {
                "accepted"
            };
            (
                StatusCode::OK,
                Json(serde_json::json!({ "status": status, "accepted": accepted, "duplicates": duplicate })),
            )
                .into_response()
        }
        Err(IngestError::Overloaded) => reject(
            "overloaded",
            Problem::unavailable("ingest queue full; retry later"),
        ),
        Err(IngestError::Unavailable) => reject(
            "unavailable",
            Problem::unavailable("store unavailable; retry later"),
        ),
    }
}
