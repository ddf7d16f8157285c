//! Rows the store returns to the API and the workers.

use serde::Serialize;

/// A raw event to insert, as the webhook endpoint produced it.
#[derive(Debug, Clone)]
pub struct NewRawEvent {
    pub connector_id: String,
    pub provider_event_id: String,
    pub kind: String,
    pub occurred_at: Option<i64>,
    pub received_at: i64,
    /// JSON array of [name, value] pairs.
    pub headers: String,
    pub payload: bytes::Bytes,
}

impl NewRawEvent {
    /// A connector's raw event (from a webhook, a poll or a backfill) as received at `now`.
    pub fn received(connector_id: &str, e: switchboard_core::RawEvent, now: i64) -> NewRawEvent {
        NewRawEvent {
            connector_id: connector_id.to_string(),
            provider_event_id: e.provider_event_id,
            kind: e.kind,
            occurred_at: e.occurred_at,
            received_at: now,
            headers: serde_json::to_string(&e.headers).unwrap_or_else(|_| "[]".into()),
            payload: e.payload,
        }
    }
}

/// What a group commit did with one raw event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Accepted(i64),
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub id: i64,
    pub raw_event_id: i64,
    pub attempts: i64,
    /// A replay re-normalises history: it must not announce old messages as new.
    pub replay: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadJob {
    pub id: i64,
    pub raw_event_id: i64,
    pub connector_id: String,
    pub provider_event_id: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub queued: i64,
    pub running: i64,
    pub dead: i64,
    /// Age of the oldest job waiting, milliseconds.
    pub oldest_queued_ms: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Conversation {
    pub id: String,
    pub connector_id: String,
    pub channel: String,
    pub thread_key: String,
    /// The customer as of now (merges followed).
    pub customer_id: String,
    pub status: String,
    pub last_message_at: String,
    pub created_at: String,
    pub assignee_id: Option<String>,
    /// none | low | medium | high | urgent
    pub priority: String,
    pub snoozed_until: Option<String>,
    /// Set when merged into another conversation, which now holds the messages.
    pub merged_into: Option<String>,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub id: i64,
    pub customer_id: String,
    pub conversation_id: Option<String>,
    pub connector_id: String,
    pub channel: String,
    pub kind: String,
    pub direction: String,
    pub occurred_at: String,
    /// The raw event it came from; none for entries made by people (notes, replies, changes).
    pub raw_event_id: Option<i64>,
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// Who made it: an agent id, `token:<id>`, `system`; none for provider events.
    pub actor: Option<String>,
    /// For a reply: its outbound message, and how far delivery got.
    pub outbound_id: Option<String>,
    pub delivery_state: Option<String>,
    pub delivery_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Customer {
    pub id: String,
    pub display_name: Option<String>,
    pub created_at: String,
    /// Customers merged into this one; their ids still resolve here.
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Identity {
    pub kind: String,
    pub scope: String,
    pub value: String,
    /// Provenance: which connector and raw event first brought it, and when.
    pub connector_id: String,
    pub raw_event_id: Option<i64>,
    pub first_seen: String,
    pub last_seen: String,
    /// The customer record it was first attached to (differs from the customer after a merge).
    pub via_customer_id: String,
    /// Provenance of the latest sighting.
    pub last_connector_id: Option<String>,
    pub last_raw_event_id: Option<i64>,
    /// False when the value is only recorded: a guard keeps it from linking customers.
    pub links: bool,
    /// blocked | shared | capped, when it does not link.
    pub guard: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MergeRecord {
    pub id: String,
    pub survivor_id: String,
    pub merged_id: String,
    pub actor: String,
    pub reason: String,
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    pub raw_event_id: Option<i64>,
    pub created_at: String,
    /// The customer records this merge moved (the merged one and its aliases then).
    pub moved_ids: Vec<String>,
    pub undone_at: Option<String>,
    pub undone_by: Option<String>,
    pub undo_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerDetail {
    #[serde(flatten)]
    pub customer: Customer,
    pub identities: Vec<Identity>,
    pub merges: Vec<MergeRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    pub agent_id: Option<String>,
}

/// RFC 3339 in UTC with milliseconds, for every time the API shows.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub active: bool,
    pub created_at: String,
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: String,
    pub agent_id: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SavedReply {
    pub id: String,
    pub name: String,
    pub text: String,
    pub created_by: String,
    pub updated_at: String,
}

/// An agent's reply on its way out through the conversation's channel.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OutboundMessageRow {
    pub id: String,
    pub conversation_id: String,
    pub connector_id: String,
    #[serde(skip)]
    pub thread_key: String,
    pub text: String,
    pub attachments: Vec<String>,
    pub idempotency_key: String,
    /// queued | sending | sent | delivered | read | failed
    pub state: String,
    pub attempts: i64,
    pub provider_message_id: Option<String>,
    /// The provider's reason when the send failed (or the last retryable error).
    pub error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}
