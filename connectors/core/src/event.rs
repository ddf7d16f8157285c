//! The event types: what a connector stores raw, and what its normaliser makes of it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One provider event as received: the provider's own id for dedupe, the exact payload bytes,
/// and the headers that matter. Stored before anything else happens.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    /// The provider's id of this event; `UNIQUE(connector_id, provider_event_id)` dedupes.
    pub provider_event_id: String,
    /// The provider's event type (e.g. `message`, `orders/create`), for filtering and replay.
    pub kind: String,
    /// When the provider says it happened, unix milliseconds, if it says.
    pub occurred_at: Option<i64>,
    /// The exact bytes received (or the exact slice of a batch that is this event).
    pub payload: Bytes,
    /// Headers kept with the event (lower-case names), e.g. the provider's delivery id.
    pub headers: Vec<(String, String)>,
}

/// A raw event as the store gives it back to a normaliser.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub connector_id: String,
    pub provider_event_id: String,
    pub kind: String,
    pub occurred_at: Option<i64>,
    /// When the hub accepted it, unix milliseconds; the fallback for `occurred_at`, so that a
    /// normaliser never needs a clock.
    pub received_at: i64,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl StoredEvent {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// What an identifier claims to be. Strong kinds merge customers; weak ones never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimKind {
    Email,
    Phone,
    /// A user id on a platform; only unique within its scope (network and account).
    PlatformId,
    /// A customer id in an external system; scoped by the connector id.
    ExternalId,
    /// A display name: a weak attribute, never used to merge.
    Name,
}

impl ClaimKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimKind::Email => "email",
            ClaimKind::Phone => "phone",
            ClaimKind::PlatformId => "platform_id",
            ClaimKind::ExternalId => "external_id",
            ClaimKind::Name => "name",
        }
    }

    pub fn parse(s: &str) -> Option<ClaimKind> {
        Some(match s {
            "email" => ClaimKind::Email,
            "phone" => ClaimKind::Phone,
            "platform_id" => ClaimKind::PlatformId,
            "external_id" => ClaimKind::ExternalId,
            "name" => ClaimKind::Name,
            _ => return None,
        })
    }

    /// Strong identifiers identify one person; they are matched and may merge customers.
    pub fn is_strong(self) -> bool {
        !matches!(self, ClaimKind::Name)
    }
}

/// One identifier an event says belongs to its customer, in its most specific scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdentityClaim {
    pub kind: ClaimKind,
    pub value: String,
    /// `""` for global kinds (email, phone); `network:account` for platform ids; the
    /// connector id for external ids.
    pub scope: String,
}

impl IdentityClaim {
    pub fn email(v: impl Into<String>) -> Self {
        Self {
            kind: ClaimKind::Email,
            value: v.into(),
            scope: String::new(),
        }
    }
    pub fn phone(v: impl Into<String>) -> Self {
        Self {
            kind: ClaimKind::Phone,
            value: v.into(),
            scope: String::new(),
        }
    }
    pub fn platform_id(scope: impl Into<String>, v: impl Into<String>) -> Self {
        Self {
            kind: ClaimKind::PlatformId,
            value: v.into(),
            scope: scope.into(),
        }
    }
    pub fn external_id(connector_id: impl Into<String>, v: impl Into<String>) -> Self {
        Self {
            kind: ClaimKind::ExternalId,
            value: v.into(),
            scope: connector_id.into(),
        }
    }
    pub fn name(v: impl Into<String>) -> Self {
        Self {
            kind: ClaimKind::Name,
            value: v.into(),
            scope: String::new(),
        }
    }
}

/// A file sent with a message. Providers give either a URL or a media id to fetch it by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// `image`, `video`, `audio`, `file`, `sticker`, `location` … as the provider names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The provider's id for the media when it gives no URL (WhatsApp, Telegram, LINE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// What happened, in the hub's own terms. Serialised as the timeline entry body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// An order with its addresses is the largest body; events live only for one pipeline batch, so
// boxing it would buy nothing but noise in every connector.
#[allow(clippy::large_enum_variant)]
pub enum EventBody {
    Message {
        #[serde(skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        text: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
        /// The provider's id of the message this one replies to or quotes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    /// The customer edited an earlier message (`message_id`); `text` is the new text.
    Edit {
        message_id: String,
        text: String,
    },
    /// The customer deleted (unsent) an earlier message.
    Delete {
        message_id: String,
    },
    /// Business documents: entities the hub keeps one current copy of (see `commerce`).
    Order(crate::commerce::Order),
    Payment(crate::commerce::Payment),
    Invoice(crate::commerce::Invoice),
    /// A customer record in another system (created or updated).
    Profile(crate::commerce::Profile),
    /// A provider status update (delivered, read, failed) for one of our own sends.
    /// `message_id` is the provider's id of our message (what `Outbound::send` returned).
    Status {
        message_id: String,
        status: String,
        /// The provider's reason when `status` is `failed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Note {
        text: String,
    },
    /// Kept, visible, and counted: something the normaliser does not understand.
    Unsupported {
        reason: String,
    },
}

impl EventBody {
    /// `(entity kind, entity id, version)` for business documents, which the hub keeps as one
    /// current copy per id; `None` for everything else.
    pub fn entity(&self) -> Option<(&'static str, &str, Option<i64>)> {
        match self {
            EventBody::Order(o) => Some(("order", o.order_id.as_str(), o.updated_at)),
            EventBody::Payment(p) => Some(("payment", p.payment_id.as_str(), p.updated_at)),
            EventBody::Invoice(i) => Some(("invoice", i.invoice_id.as_str(), i.updated_at)),
            EventBody::Profile(p) => Some(("profile", p.external_id.as_str(), p.updated_at)),
            _ => None,
        }
    }

    /// The timeline entry kind, a stable string used in queries.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Message { .. } => "message",
            EventBody::Edit { .. } => "edit",
            EventBody::Delete { .. } => "delete",
            EventBody::Order { .. } => "order",
            EventBody::Payment { .. } => "payment",
            EventBody::Invoice { .. } => "invoice",
            EventBody::Profile { .. } => "profile",
            EventBody::Status { .. } => "status",
            EventBody::Note { .. } => "note",
            EventBody::Unsupported { .. } => "unsupported",
        }
    }
}

/// One thing a raw event means for the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedEvent {
    /// The channel name shown to agents (`generic`, `messenger`, `email` …).
    pub channel: String,
    pub direction: Direction,
    /// The conversation key within the connector; `None` for entries that belong to the
    /// customer but to no conversation (an order, an invoice).
    pub thread_key: Option<String>,
    pub claims: Vec<IdentityClaim>,
    /// Unix milliseconds.
    pub occurred_at: i64,
    pub body: EventBody,
    /// Other keys this event's conversation may be known by (email `Message-ID`s from
    /// `References`/`In-Reply-To`, a subject key). An event whose refs name a conversation the
    /// hub already knows (for the same connector) joins it instead of opening its own
    /// `thread_key`; every ref is recorded for the conversation the event lands in. A ref of the
    /// form `window:<seconds>:<key>` matches only while the conversation was last referenced
    /// by `<key>` at most `<seconds>` before this event. Most connectors leave it empty.
    pub thread_refs: Vec<String>,
}
