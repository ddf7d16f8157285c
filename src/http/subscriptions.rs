//! `/api/v1/webhook-subscriptions`: outgoing webhooks for CRM/MIS systems (admin only).
//! Deliveries follow Standard Webhooks; the secret is shown once, in the create answer.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::{keyset_after, keyset_page};
use super::api::{limit, reject_unknown, Page, Params, Principal};
use super::extract::ValidJson;
use super::problem::Problem;
use super::AppState;
use crate::store::{SubscriptionPatch, WebhookDelivery, WebhookSubscription, EVENT_KINDS};
use crate::webhooks_out::{generate_secret, secret_key, SECRET_PREFIX};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_subscriptions, create_subscription))
        .routes(routes!(
            get_subscription,
            update_subscription,
            delete_subscription
        ))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(replay_delivery))
}

fn valid_url(v: &str) -> Result<String, Problem> {
    let bad = |why: &str| Problem::invalid("url", "invalid_url", why.to_string());
    let v = v.trim();
    if v.len() > 2000 {
        return Err(bad("url must be at most 2000 characters"));
    }
    let u = reqwest::Url::parse(v).map_err(|e| bad(&format!("url is not a valid URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("url must be an http or https URL"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("url must name a host"));
    }
    Ok(u.to_string())
}

fn valid_events(v: &[String]) -> Result<Vec<String>, Problem> {
    if v.is_empty() {
        return Err(Problem::invalid(
            "events",
            "invalid_events",
            format!(
                "events must name at least one of {}",
                EVENT_KINDS.join(", ")
            ),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for k in v {
        if !EVENT_KINDS.contains(&k.as_str()) {
            return Err(Problem::invalid(
                "events",
                "unknown_event",
                format!("unknown event `{k}`; known: {}", EVENT_KINDS.join(", ")),
            ));
        }
        if !out.contains(k) {
            out.push(k.clone());
        }
    }
    Ok(out)
}

/// A given secret: `whsec_` + base64 of 24 to 64 bytes (the prefix is added when missing).
fn valid_secret(v: &str) -> Result<String, Problem> {
    let v = v.trim();
    let b64 = v.strip_prefix(SECRET_PREFIX).unwrap_or(v);
    match secret_key(b64) {
        Some(k) if (24..=64).contains(&k.len()) => Ok(format!("{SECRET_PREFIX}{b64}")),
        _ => Err(Problem::invalid(
            "secret",
            "invalid_secret",
            "secret must be `whsec_` followed by the base64 of 24 to 64 random bytes",
        )),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewSubscription {
    url: String,
    events: Vec<String>,
    secret: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct CreatedSubscription {
    #[serde(flatten)]
    subscription: WebhookSubscription,
    /// Shown once: the key that signs every delivery.
    secret: String,
}

#[utoipa::path(
    post,
    path = "/webhook-subscriptions",
    tag = "webhook-subscriptions",
    summary = "Subscribe a URL to events (admin); the signing secret is shown once",
    request_body = NewSubscription,
    responses(
        (status = 201, description = "created", body = CreatedSubscription),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn create_subscription(
    p: Principal,
    State(s): State<AppState>,
    ValidJson(b): ValidJson<NewSubscription>,
) -> Result<(StatusCode, Json<CreatedSubscription>), Problem> {
    p.require_admin()?;
    let url = valid_url(&b.url)?;
    let events = valid_events(&b.events)?;
    let secret = match b.secret.as_deref() {
        Some(v) => valid_secret(v)?,
        None => generate_secret(),
    };
    let subscription = s.store.create_subscription(&url, &events, &secret).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedSubscription {
            subscription,
            secret,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/webhook-subscriptions",
    tag = "webhook-subscriptions",
    summary = "List subscriptions (admin)",
    params(
        ("limit" = Option<i64>, Query),
        ("cursor" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "a page", body = Page<WebhookSubscription>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_subscriptions(
    p: Principal,
    State(s): State<AppState>,
    Query(q): Params,
) -> Result<Json<Page<WebhookSubscription>>, Problem> {
    p.require_admin()?;
    reject_unknown(&q, &["limit", "cursor"])?;
    let limit = limit(&q)?;
    let rows = s
        .store
        .list_subscriptions(keyset_after(&q)?.as_deref(), limit + 1)
        .await?;
    Ok(Json(keyset_page(rows, limit, |r| r.id.clone())))
}

#[utoipa::path(
    get,
    path = "/webhook-subscriptions/{id}",
    tag = "webhook-subscriptions",
    summary = "A subscription, with whether it is paused and why (admin)",
    params(
        ("id" = String, Path, description = "subscription id"),
    ),
    responses(
        (status = 200, description = "the subscription", body = WebhookSubscription),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn get_subscription(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WebhookSubscription>, Problem> {
    p.require_admin()?;
    Ok(Json(s.store.get_subscription(&id).await?.ok_or_else(
        || Problem::not_found("webhook subscription"),
    )?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SubscriptionChange {
    url: Option<String>,
    events: Option<Vec<String>>,
    /// `false` stops deliveries (they wait); `true` enables and resumes a paused subscription.
    active: Option<bool>,
    /// `false` resumes a subscription paused by failures.
    paused: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/webhook-subscriptions/{id}",
    tag = "webhook-subscriptions",
    summary = "Change url/events/active; resume a paused subscription (admin)",
    params(
        ("id" = String, Path, description = "subscription id"),
    ),
    request_body = SubscriptionChange,
    responses(
        (status = 200, description = "the subscription", body = WebhookSubscription),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn update_subscription(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<SubscriptionChange>,
) -> Result<Json<WebhookSubscription>, Problem> {
    p.require_admin()?;
    if b.paused == Some(true) {
        return Err(Problem::invalid(
            "paused",
            "invalid_field",
            "paused can only be set to false (resume); use active = false to stop deliveries",
        ));
    }
    let patch = SubscriptionPatch {
        url: b.url.as_deref().map(valid_url).transpose()?,
        events: b.events.as_deref().map(valid_events).transpose()?,
        active: b.active,
        resume: b.active == Some(true) || b.paused == Some(false),
    };
    Ok(Json(s.store.update_subscription(&id, &patch).await?))
}

#[utoipa::path(
    delete,
    path = "/webhook-subscriptions/{id}",
    tag = "webhook-subscriptions",
    summary = "Delete a subscription (admin)",
    params(
        ("id" = String, Path, description = "subscription id"),
    ),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn delete_subscription(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    p.require_admin()?;
    s.store.delete_subscription(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/webhook-subscriptions/{id}/deliveries",
    tag = "webhook-subscriptions",
    summary = "Deliveries with every attempt logged (admin)",
    params(
        ("id" = String, Path, description = "subscription id"),
        ("state" = Option<String>, Query, description = "pending | sending | delivered | failed"),
        ("limit" = Option<i64>, Query),
        ("cursor" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "a page", body = Page<WebhookDelivery>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_deliveries(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Json<Page<WebhookDelivery>>, Problem> {
    p.require_admin()?;
    reject_unknown(&q, &["state", "limit", "cursor"])?;
    let limit = limit(&q)?;
    let state = q.get("state").filter(|v| !v.is_empty());
    if let Some(st) = state {
        if !["pending", "sending", "delivered", "failed"].contains(&st.as_str()) {
            return Err(Problem::bad_request(
                "invalid_state",
                "state must be one of pending, sending, delivered, failed",
            ));
        }
    }
    if s.store.get_subscription(&id).await?.is_none() {
        return Err(Problem::not_found("webhook subscription"));
    }
    let rows = s
        .store
        .list_deliveries(
            &id,
            state.map(String::as_str),
            keyset_after(&q)?.as_deref(),
            limit + 1,
        )
        .await?;
    Ok(Json(keyset_page(rows, limit, |d| d.id.clone())))
}

#[utoipa::path(
    get,
    path = "/webhook-subscriptions/{id}/deliveries/{delivery_id}",
    tag = "webhook-subscriptions",
    summary = "A delivery and its attempts (admin)",
    params(
        ("id" = String, Path, description = "subscription id"),
        ("delivery_id" = String, Path),
    ),
    responses(
        (status = 200, description = "the delivery", body = WebhookDelivery),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn get_delivery(
    p: Principal,
    State(s): State<AppState>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Json<WebhookDelivery>, Problem> {
    p.require_admin()?;
    Ok(Json(
        s.store
            .get_delivery(&id, &delivery_id)
            .await?
            .ok_or_else(|| Problem::not_found("delivery"))?,
    ))
}

#[utoipa::path(
    post,
    path = "/webhook-subscriptions/{id}/deliveries/{delivery_id}/replay",
    tag = "webhook-subscriptions",
    summary = "Send a failed delivery again (admin)",
    params(
        ("id" = String, Path, description = "subscription id"),
        ("delivery_id" = String, Path),
    ),
    responses(
        (status = 202, description = "queued", body = WebhookDelivery),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn replay_delivery(
    p: Principal,
    State(s): State<AppState>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<WebhookDelivery>), Problem> {
    p.require_admin()?;
    let d = s.store.replay_delivery(&id, &delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(d)))
}
