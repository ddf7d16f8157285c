//! The agents' side of conversations: workflow changes, notes, labels, merges, replies
//! through the channel, and saved replies.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::{keyset_after, keyset_page};
use super::api::{limit, reject_unknown, Page, Params, Principal};
use super::extract::ValidJson;
use super::problem::Problem;
use super::AppState;
use crate::store::{Conversation, ConversationPatch, OutboundMessageRow, SavedReply};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(update_conversation))
        .routes(routes!(add_label))
        .routes(routes!(remove_label))
        .routes(routes!(add_note))
        .routes(routes!(merge))
        .routes(routes!(reply))
        .routes(routes!(get_message))
        .routes(routes!(retry))
        .routes(routes!(list_saved, create_saved))
        .routes(routes!(update_saved, delete_saved))
}

const STATUSES: &[&str] = &["open", "pending", "snoozed", "resolved"];
const PRIORITIES: &[&str] = &["none", "low", "medium", "high", "urgent"];

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn text(field: &str, v: &str, max: usize) -> Result<String, Problem> {
    let t = v.trim();
    if t.is_empty() || t.chars().count() > max {
        return Err(Problem::invalid(
            field,
            "invalid_field",
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    Ok(t.to_string())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ConversationChange {
    status: Option<String>,
    /// RFC 3339; required with status `snoozed`.
    snoozed_until: Option<String>,
    /// An agent id, or null to unassign.
    #[serde(default, deserialize_with = "nullable")]
    assignee_id: Option<Option<String>>,
    priority: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/conversations/{id}",
    tag = "conversations",
    summary = "Change status, snooze, assignee or priority",
    params(
        ("id" = String, Path, description = "conversation id"),
    ),
    request_body = ConversationChange,
    responses(
        (status = 200, description = "the conversation", body = Conversation),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn update_conversation(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<ConversationChange>,
) -> Result<Json<crate::store::Conversation>, Problem> {
    if let Some(st) = &b.status {
        if !STATUSES.contains(&st.as_str()) {
            return Err(Problem::invalid(
                "status",
                "invalid_status",
                "status must be one of open, pending, snoozed, resolved",
            ));
        }
    }
    if let Some(pr) = &b.priority {
        if !PRIORITIES.contains(&pr.as_str()) {
            return Err(Problem::invalid(
                "priority",
                "invalid_priority",
                "priority must be one of none, low, medium, high, urgent",
            ));
        }
    }
    let snoozed_until = match &b.snoozed_until {
        None => None,
        Some(t) => {
            let at = chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    Problem::invalid(
                        "snoozed_until",
                        "invalid_time",
                        "snoozed_until must be an RFC 3339 time",
                    )
                })?
                .timestamp_millis();
            if at <= crate::store::now_ms() {
                return Err(Problem::invalid(
                    "snoozed_until",
                    "invalid_time",
                    "snoozed_until must be in the future",
                ));
            }
            if b.status.as_deref().is_some_and(|st| st != "snoozed") {
                return Err(Problem::invalid(
                    "snoozed_until",
                    "invalid_field",
                    "snoozed_until goes with status snoozed",
                ));
            }
            Some(at)
        }
    };
    let patch = ConversationPatch {
        status: b
            .status
            .clone()
            .or_else(|| snoozed_until.map(|_| "snoozed".to_string())),
        snoozed_until,
        assignee_id: b.assignee_id.clone(),
        priority: b.priority.clone(),
    };
    s.store.update_conversation(&id, &patch, &p.actor()).await?;
    let c = s
        .store
        .get_conversation(&id)
        .await?
        .ok_or_else(|| Problem::not_found("conversation"))?;
    Ok(Json(c))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LabelBody {
    label: String,
}

fn label(v: &str) -> Result<String, Problem> {
    let l = v.trim().to_lowercase();
    if l.is_empty() || l.len() > 64 || l.chars().any(|c| c.is_control() || c == '/') {
        return Err(Problem::invalid(
            "label",
            "invalid_label",
            "label must be 1 to 64 characters, without / or control characters",
        ));
    }
    Ok(l)
}

#[utoipa::path(
    post,
    path = "/conversations/{id}/labels",
    tag = "conversations",
    summary = "Add a label",
    params(
        ("id" = String, Path, description = "conversation id"),
    ),
    request_body = LabelBody,
    responses(
        (status = 204, description = "labelled"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn add_label(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<LabelBody>,
) -> Result<StatusCode, Problem> {
    s.store
        .add_label(&id, &label(&b.label)?, &p.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/conversations/{id}/labels/{label}",
    tag = "conversations",
    summary = "Remove a label",
    params(
        ("id" = String, Path, description = "conversation id"),
        ("label" = String, Path),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn remove_label(
    p: Principal,
    State(s): State<AppState>,
    Path((id, l)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    s.store.remove_label(&id, &label(&l)?, &p.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Created {
    id: i64,
}

#[utoipa::path(
    post,
    path = "/conversations/{id}/notes",
    tag = "conversations",
    summary = "Add a private note (never sent to the customer)",
    params(
        ("id" = String, Path, description = "conversation id"),
    ),
    request_body = NoteBody,
    responses(
        (status = 201, description = "the timeline entry", body = Created),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn add_note(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<NoteBody>,
) -> Result<(StatusCode, Json<Created>), Problem> {
    let entry = s
        .store
        .add_note(&id, &text("text", &b.text, 20_000)?, &p.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(Created { id: entry })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    other: String,
}

#[utoipa::path(
    post,
    path = "/conversations/{id}/merge",
    tag = "conversations",
    summary = "Merge another conversation of the same customer into this one",
    params(
        ("id" = String, Path, description = "conversation id"),
    ),
    request_body = MergeBody,
    responses(
        (status = 200, description = "the surviving conversation", body = Conversation),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn merge(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<MergeBody>,
) -> Result<Json<crate::store::Conversation>, Problem> {
    s.store
        .merge_conversations(&id, &b.other, &p.actor())
        .await?;
    let c = s
        .store
        .get_conversation(&id)
        .await?
        .ok_or_else(|| Problem::not_found("conversation"))?;
    Ok(Json(c))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplyBody {
    text: String,
    #[serde(default)]
    attachments: Vec<String>,
}

/// `POST …/replies`: 202 with the message `queued`; the sender worker delivers it. The same
/// `Idempotency-Key` and body give back the same message, never a second send.
#[utoipa::path(
    post,
    path = "/conversations/{id}/replies",
    tag = "replies",
    summary = "Reply through the channel; 202 with the message queued",
    params(
        ("id" = String, Path, description = "conversation id"),
        ("Idempotency-Key" = Option<String>, Header, description = "same key and body: the same message, never a second send; same key, other body: 422"),
    ),
    request_body = ReplyBody,
    responses(
        (status = 202, description = "queued (or the message this key already made)", body = OutboundMessageRow),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn reply(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ValidJson(b): ValidJson<ReplyBody>,
) -> Result<(StatusCode, Json<OutboundMessageRow>), Problem> {
    let text = text("text", &b.text, 20_000)?;
    if b.attachments.len() > 10 {
        return Err(Problem::invalid(
            "attachments",
            "invalid_field",
            "at most 10 attachments",
        ));
    }
    for (i, a) in b.attachments.iter().enumerate() {
        let ok = (a.starts_with("https://") || a.starts_with("http://"))
            && a.len() <= 2048
            && a.parse::<axum::http::Uri>().is_ok();
        if !ok {
            return Err(Problem::invalid(
                &format!("attachments[{i}]"),
                "invalid_url",
                "attachments must be http(s) URLs",
            ));
        }
    }
    let key = match headers.get("idempotency-key") {
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| {
                    Problem::invalid(
                        "Idempotency-Key",
                        "invalid_idempotency_key",
                        "must be visible ASCII",
                    )
                })?
                .trim();
            if k.is_empty() || k.len() > 255 {
                return Err(Problem::invalid(
                    "Idempotency-Key",
                    "invalid_idempotency_key",
                    "must be 1 to 255 characters",
                ));
            }
            k.to_string()
        }
        // Without a key a client cannot safely retry; the server makes one so the
        // message still has one end to end.
        None => uuid::Uuid::new_v4().to_string(),
    };
    let (msg, fresh) = s
        .store
        .create_reply(&id, &text, &b.attachments, &key, &p.actor())
        .await?;
    if fresh {
        s.outbound_wake.notify_one();
    }
    Ok((StatusCode::ACCEPTED, Json(msg)))
}

#[utoipa::path(
    get,
    path = "/conversations/{id}/messages/{message_id}",
    tag = "replies",
    summary = "An outbound message and its delivery state",
    params(
        ("id" = String, Path, description = "conversation id"),
        ("message_id" = String, Path),
    ),
    responses(
        (status = 200, description = "the message", body = OutboundMessageRow),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn get_message(
    _p: Principal,
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
) -> Result<Json<OutboundMessageRow>, Problem> {
    let m = s
        .store
        .get_outbound(&mid)
        .await?
        .filter(|m| m.conversation_id == id)
        .ok_or_else(|| Problem::not_found("message"))?;
    Ok(Json(m))
}

#[utoipa::path(
    post,
    path = "/conversations/{id}/messages/{message_id}/retry",
    tag = "replies",
    summary = "Queue a failed message again",
    params(
        ("id" = String, Path, description = "conversation id"),
        ("message_id" = String, Path),
    ),
    responses(
        (status = 202, description = "queued", body = OutboundMessageRow),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn retry(
    _p: Principal,
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
) -> Result<(StatusCode, Json<OutboundMessageRow>), Problem> {
    let m = s.store.retry_outbound(&id, &mid).await?;
    s.outbound_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(m)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SavedBody {
    name: String,
    text: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SavedChange {
    name: Option<String>,
    text: Option<String>,
}

#[utoipa::path(
    post,
    path = "/saved-replies",
    tag = "saved-replies",
    summary = "Create a saved reply",
    request_body = SavedBody,
    responses(
        (status = 201, description = "created", body = SavedReply),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn create_saved(
    p: Principal,
    State(s): State<AppState>,
    ValidJson(b): ValidJson<SavedBody>,
) -> Result<(StatusCode, Json<SavedReply>), Problem> {
    let r = s
        .store
        .create_saved_reply(
            &text("name", &b.name, 100)?,
            &text("text", &b.text, 20_000)?,
            &p.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

#[utoipa::path(
    get,
    path = "/saved-replies",
    tag = "saved-replies",
    summary = "List saved replies",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page of saved replies", body = Page<SavedReply>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_saved(
    _p: Principal,
    State(s): State<AppState>,
    axum::extract::Query(q): Params,
) -> Result<Json<Page<SavedReply>>, Problem> {
    reject_unknown(&q, &["limit", "cursor"])?;
    let limit = limit(&q)?;
    let rows = s
        .store
        .list_saved_replies(keyset_after(&q)?.as_deref(), limit + 1)
        .await?;
    Ok(Json(keyset_page(rows, limit, |r| r.name.clone())))
}

#[utoipa::path(
    patch,
    path = "/saved-replies/{id}",
    tag = "saved-replies",
    summary = "Change a saved reply",
    params(
        ("id" = String, Path, description = "saved reply id"),
    ),
    request_body = SavedChange,
    responses(
        (status = 200, description = "the saved reply", body = SavedReply),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn update_saved(
    _p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<SavedChange>,
) -> Result<Json<SavedReply>, Problem> {
    let name = b
        .name
        .as_deref()
        .map(|n| text("name", n, 100))
        .transpose()?;
    let body = b
        .text
        .as_deref()
        .map(|t| text("text", t, 20_000))
        .transpose()?;
    Ok(Json(
        s.store
            .update_saved_reply(&id, name.as_deref(), body.as_deref())
            .await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/saved-replies/{id}",
    tag = "saved-replies",
    summary = "Delete a saved reply",
    params(
        ("id" = String, Path, description = "saved reply id"),
    ),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn delete_saved(
    _p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    s.store.delete_saved_reply(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
