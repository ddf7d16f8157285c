//! The agents' side of conversations: workflow changes, notes, labels, merges, replies
//! through the channel, and saved replies.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};

use super::admin::{keyset_after, keyset_page};
use super::api::{limit, reject_unknown, Page, Params, Principal};
use super::extract::ValidJson;
use super::problem::Problem;
use super::AppState;
use crate::store::{ConversationPatch, OutboundMessageRow, SavedReply};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/conversations/{id}", patch(update_conversation))
        .route("/conversations/{id}/labels", post(add_label))
        .route("/conversations/{id}/labels/{label}", delete(remove_label))
        .route("/conversations/{id}/notes", post(add_note))
        .route("/conversations/{id}/merge", post(merge))
        .route("/conversations/{id}/replies", post(reply))
        .route(
            "/conversations/{id}/messages/{message_id}",
            get(get_message),
        )
        .route(
            "/conversations/{id}/messages/{message_id}/retry",
            post(retry),
        )
        .route("/saved-replies", get(list_saved).post(create_saved))
        .route(
            "/saved-replies/{id}",
            patch(update_saved).delete(delete_saved),
        )
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

#[derive(Deserialize)]
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
    let mut c = s
        .store
        .get_conversation(&id)
        .await?
        .ok_or_else(|| Problem::not_found("conversation"))?;
    s.store.fill_labels(&mut [&mut c]).await?;
    Ok(Json(c))
}

#[derive(Deserialize)]
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

async fn remove_label(
    p: Principal,
    State(s): State<AppState>,
    Path((id, l)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    s.store.remove_label(&id, &label(&l)?, &p.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

#[derive(Serialize)]
struct Created {
    id: i64,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    other: String,
}

async fn merge(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<MergeBody>,
) -> Result<Json<crate::store::Conversation>, Problem> {
    s.store
        .merge_conversations(&id, &b.other, &p.actor())
        .await?;
    let mut c = s
        .store
        .get_conversation(&id)
        .await?
        .ok_or_else(|| Problem::not_found("conversation"))?;
    s.store.fill_labels(&mut [&mut c]).await?;
    Ok(Json(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyBody {
    text: String,
    #[serde(default)]
    attachments: Vec<String>,
}

/// `POST …/replies`: 202 with the message `queued`; the sender worker delivers it. The same
/// `Idempotency-Key` and body give back the same message, never a second send.
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

async fn retry(
    _p: Principal,
    State(s): State<AppState>,
    Path((id, mid)): Path<(String, String)>,
) -> Result<(StatusCode, Json<OutboundMessageRow>), Problem> {
    let m = s.store.retry_outbound(&id, &mid).await?;
    s.outbound_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(m)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedBody {
    name: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedChange {
    name: Option<String>,
    text: Option<String>,
}

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

async fn delete_saved(
    _p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    s.store.delete_saved_reply(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
