//! `/api/v1`: the read side of the inbox. Bearer tokens, keyset cursors, problem+json.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use switchboard_core::IdentityClaim;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::Problem;
use super::AppState;
use crate::auth::{hash_token, Role};
use crate::domain::{EmailAddress, Phone};
use crate::pipeline::identity::identity_key;
use crate::store::{
    Conversation, ConversationFilter, Customer, CustomerDetail, CustomerQuery, TimelineEntry,
};

pub fn routes() -> OpenApiRouter<AppState> {
    let mut r = OpenApiRouter::new()
        .routes(routes!(list_conversations))
        .routes(routes!(get_conversation))
        .routes(routes!(list_customers))
        .routes(routes!(get_customer))
        .routes(routes!(customer_timeline))
        .routes(routes!(super::events::events))
        .routes(routes!(super::search::search));
    for other in [super::admin::routes(), super::inbox::routes()] {
        r = r.merge(other);
    }
    r = r.merge(super::subscriptions::routes());
    r = r.merge(super::connectors::routes());
    r = r.merge(super::documents::routes());
    r = r.merge(super::attachments::routes());
    r = r.merge(super::identity::routes());
    r = r.merge(super::suggestions::routes());
    r
}

/// The caller, from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    /// The agent the token acts for; none for tokens made by the CLI.
    pub agent_id: Option<String>,
}

impl Principal {
    /// Who did it, as recorded on the timeline: the agent, else the token.
    pub fn actor(&self) -> String {
        self.agent_id
            .clone()
            .unwrap_or_else(|| format!("token:{}", self.token_id))
    }

    /// Agents, tokens, connectors and subscriptions are admin business.
    pub fn require_admin(&self) -> Result<(), Problem> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Agent => Err(Problem::forbidden("this needs an admin token")),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Problem::unauthorized("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| Problem::unauthorized("expected `Authorization: Bearer <token>`"))?;
        let rec = s
            .store
            .find_token(&hash_token(token))
            .await?
            .ok_or_else(|| Problem::unauthorized("invalid or revoked token"))?;
        let role = Role::parse(&rec.role)
            .ok_or_else(|| Problem::unauthorized("token has an unknown role"))?;
        Ok(Principal {
            token_id: rec.id,
            name: rec.name,
            role,
            agent_id: rec.agent_id,
        })
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

pub(super) type Params = Query<HashMap<String, String>>;

const DEFAULT_LIMIT: i64 = 50;
pub(super) const MAX_LIMIT: i64 = 200;

pub(super) fn limit(q: &HashMap<String, String>) -> Result<i64, Problem> {
    match q.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Problem::bad_request(
                    "invalid_limit",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                )
            }),
    }
}

fn encode_cursor(t: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{t}:{id}"))
}

fn decode_cursor(q: &HashMap<String, String>) -> Result<Option<(i64, String)>, Problem> {
    let Some(c) = q.get("cursor").filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let bad = || Problem::bad_request("invalid_cursor", "cursor is not one this API returned");
    let raw = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = s.split_once(':').ok_or_else(bad)?;
    Ok(Some((t.parse().map_err(|_| bad())?, id.to_string())))
}

fn decode_entry_cursor(q: &HashMap<String, String>) -> Result<Option<(i64, i64)>, Problem> {
    match decode_cursor(q)? {
        None => Ok(None),
        Some((t, id)) => id.parse().map(|id| Some((t, id))).map_err(|_| {
            Problem::bad_request("invalid_cursor", "cursor is not one this API returned")
        }),
    }
}

pub(super) fn reject_unknown(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), Problem> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Problem::bad_request(
            "unknown_parameter",
            format!(
                "unknown query parameter `{k}`; allowed: {}",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

#[utoipa::path(
    get,
    path = "/conversations",
    tag = "conversations",
    summary = "List conversations, newest activity first",
    params(
        ("status" = Option<String>, Query, description = "open | pending | snoozed | resolved"),
        ("connector" = Option<String>, Query, description = "connector id"),
        ("assignee" = Option<String>, Query, description = "agent id, or none for unassigned"),
        ("label" = Option<String>, Query),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page of conversations", body = Page<Conversation>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_conversations(
    _p: Principal,
    State(s): State<AppState>,
    Query(q): Params,
) -> Result<Json<Page<crate::store::Conversation>>, Problem> {
    reject_unknown(
        &q,
        &[
            "status",
            "connector",
            "assignee",
            "label",
            "limit",
            "cursor",
        ],
    )?;
    let status = q.get("status").filter(|v| !v.is_empty()).cloned();
    if let Some(st) = &status {
        if !["open", "pending", "snoozed", "resolved"].contains(&st.as_str()) {
            return Err(Problem::bad_request(
                "invalid_status",
                "status must be one of open, pending, snoozed, resolved",
            ));
        }
    }
    let limit = limit(&q)?;
    let f = ConversationFilter {
        status,
        connector_id: q.get("connector").filter(|v| !v.is_empty()).cloned(),
        assignee: q
            .get("assignee")
            .filter(|v| !v.is_empty())
            .map(|a| (a != "none").then(|| a.clone())),
        label: q.get("label").filter(|v| !v.is_empty()).cloned(),
        after: decode_cursor(&q)?,
        limit: limit + 1,
    };
    let mut rows = s.store.list_conversations(&f).await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|(t, c)| encode_cursor(*t, &c.id))
    });
    Ok(Json(Page {
        items: rows.into_iter().map(|(_, c)| c).collect(),
        next_cursor: next.flatten(),
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct ConversationWithMessages {
    #[serde(flatten)]
    conversation: crate::store::Conversation,
    messages: Vec<crate::store::TimelineEntry>,
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/conversations/{id}",
    tag = "conversations",
    summary = "A conversation and its messages, by occurred_at then arrival",
    params(
        ("id" = String, Path, description = "conversation id"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "the conversation", body = ConversationWithMessages),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn get_conversation(
    _p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Json<ConversationWithMessages>, Problem> {
    reject_unknown(&q, &["limit", "cursor"])?;
    let limit = limit(&q)?;
    let conversation = s
        .store
        .get_conversation(&id)
        .await?
        .ok_or_else(|| Problem::not_found("conversation"))?;
    let mut rows = s
        .store
        .conversation_entries(&id, decode_entry_cursor(&q)?, limit + 1)
        .await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last()
            .map(|(t, e)| encode_cursor(*t, &e.id.to_string()))
    });
    Ok(Json(ConversationWithMessages {
        conversation,
        messages: rows.into_iter().map(|(_, e)| e).collect(),
        next_cursor: next.flatten(),
    }))
}

#[utoipa::path(
    get,
    path = "/customers",
    tag = "customers",
    summary = "Find customers by email, phone or text",
    params(
        ("email" = Option<String>, Query),
        ("phone" = Option<String>, Query, description = "any format; normalised to E.164"),
        ("q" = Option<String>, Query, description = "substring of a name or identity"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page of customers", body = Page<Customer>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_customers(
    _p: Principal,
    State(s): State<AppState>,
    Query(q): Params,
) -> Result<Json<Page<crate::store::Customer>>, Problem> {
    reject_unknown(&q, &["email", "phone", "q", "limit", "cursor"])?;
    let limit = limit(&q)?;
    let given: Vec<&str> = ["email", "phone", "q"]
        .into_iter()
        .filter(|k| q.contains_key(*k))
        .collect();
    if given.len() > 1 {
        return Err(Problem::bad_request(
            "conflicting_filters",
            "give one of email, phone or q",
        ));
    }
    let query = if let Some(e) = q.get("email") {
        // The normaliser's form, so configured folding finds the same customer.
        let e = EmailAddress::parse(e)
            .and_then(|e| s.claims.normalize(&IdentityClaim::email(e.as_str())))
            .ok_or_else(|| Problem::bad_request("invalid_email", "email is not a valid address"))?;
        CustomerQuery::Identity(identity_key(&e))
    } else if let Some(p) = q.get("phone") {
        let p = Phone::parse(p, s.claims.region)
            .ok_or_else(|| Problem::bad_request("invalid_phone", "phone is not a valid number"))?;
        CustomerQuery::Identity(identity_key(&IdentityClaim::phone(p.as_str())))
    } else if let Some(text) = q.get("q") {
        let text = text.trim().to_lowercase();
        if text.is_empty() || text.len() > 200 {
            return Err(Problem::bad_request(
                "invalid_query",
                "q must be 1 to 200 characters",
            ));
        }
        CustomerQuery::Text(text)
    } else {
        CustomerQuery::All
    };
    let after = q.get("cursor").filter(|c| !c.is_empty()).map(|c| {
        URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Problem::bad_request("invalid_cursor", "cursor is not one this API returned")
            })
    });
    let after = after.transpose()?;
    let mut rows = s
        .store
        .find_customers(&query, after.as_deref(), limit + 1)
        .await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|c| URL_SAFE_NO_PAD.encode(&c.id))
    });
    Ok(Json(Page {
        items: rows,
        next_cursor: next.flatten(),
    }))
}

#[utoipa::path(
    get,
    path = "/customers/{id}",
    tag = "customers",
    summary = "A customer with every identity, its provenance, aliases and merges",
    params(
        ("id" = String, Path, description = "customer (an alias resolves to its survivor) id"),
    ),
    responses(
        (status = 200, description = "the customer", body = CustomerDetail),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn get_customer(
    _p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<crate::store::CustomerDetail>, Problem> {
    let canonical = s
        .store
        .canonical_customer(&id)
        .await?
        .ok_or_else(|| Problem::not_found("customer"))?;
    let detail = s
        .store
        .customer_detail(&canonical)
        .await?
        .ok_or_else(|| Problem::not_found("customer"))?;
    Ok(Json(detail))
}

#[utoipa::path(
    get,
    path = "/customers/{id}/timeline",
    tag = "customers",
    summary = "The customer timeline, newest first",
    params(
        ("id" = String, Path, description = "customer id"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page of timeline entries", body = Page<TimelineEntry>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn customer_timeline(
    _p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Json<Page<crate::store::TimelineEntry>>, Problem> {
    reject_unknown(&q, &["limit", "cursor"])?;
    let limit = limit(&q)?;
    let mut rows = s
        .store
        .customer_timeline(&id, decode_entry_cursor(&q)?, limit + 1)
        .await?
        .ok_or_else(|| Problem::not_found("customer"))?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last()
            .map(|(t, e)| encode_cursor(*t, &e.id.to_string()))
    });
    Ok(Json(Page {
        items: rows.into_iter().map(|(_, e)| e).collect(),
        next_cursor: next.flatten(),
    }))
}
