//! The capability traits. A connector is a normaliser plus any of: webhook ingress, poller,
//! outbound sender. The hub only ever sees these traits.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use crate::error::{ConnectorError, IngressError, NormalizeError, VerifyError};
use crate::event::{NormalizedEvent, RawEvent, StoredEvent};

pub trait Connector: Send + Sync {
    fn kind(&self) -> &'static str;
    fn normalizer(&self) -> &dyn Normalizer;
    fn webhook(&self) -> Option<&dyn WebhookIngress> {
        None
    }
    fn poller(&self) -> Option<&dyn Poller> {
        None
    }
    fn outbound(&self) -> Option<&dyn Outbound> {
        None
    }
    /// The bytes of the `index`-th attachment of a stored event's message, for connectors
    /// whose raw events carry them (email's MIME); `None` when this connector keeps none.
    /// Pure: parses the stored payload, no I/O.
    fn attachment(&self, _raw: &StoredEvent, _index: usize) -> Option<AttachmentContent> {
        None
    }
}

/// An attachment's bytes, as served by `GET /api/v1/entries/{id}/attachments/{n}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentContent {
    pub name: Option<String>,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// An HTTP request as the webhook endpoint received it: exact bytes, nothing parsed yet.
#[derive(Debug)]
pub struct InboundRequest<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    /// Unix seconds at receipt, so that timestamp checks stay pure and testable.
    pub now: i64,
}

impl InboundRequest<'_> {
    /// A header as text; `None` when absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Proof that a request passed `verify`. Only a verifier should construct one.
#[derive(Debug)]
pub struct Verified<'a> {
    pub req: &'a InboundRequest<'a>,
}

impl<'a> Verified<'a> {
    /// Call only after the request's signature (or handshake token) has been checked.
    pub fn after_check(req: &'a InboundRequest<'a>) -> Self {
        Verified { req }
    }
}

/// A response the provider expects instead of a plain acknowledgement (handshakes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ingress {
    /// Events to store, one per provider event (batches split).
    Events(Vec<RawEvent>),
    /// Answer this and store nothing (handshakes, pings).
    Reply(Reply),
}

/// Pure and synchronous: no I/O, so the webhook endpoint answers within provider limits.
pub trait WebhookIngress: Send + Sync {
    fn verify<'a>(&self, req: &'a InboundRequest<'a>) -> Result<Verified<'a>, VerifyError>;
    fn parse(&self, req: Verified<'_>) -> Result<Ingress, IngressError>;
    /// The 200 answer once the events are stored (or were duplicates), for providers that
    /// expect a particular body (Twilio: empty TwiML). `None`: the hub's JSON summary.
    fn accepted_reply(&self) -> Option<Reply> {
        None
    }
}

/// An opaque position in a provider's stream, stored by the hub.
pub type Cursor = String;

#[derive(Debug, Clone, PartialEq)]
pub struct PollPage {
    pub events: Vec<RawEvent>,
    /// Stored in the same transaction as `events`.
    pub next_cursor: Option<Cursor>,
    /// True when the provider has more right now; the poller asks again without waiting.
    pub more: bool,
}

#[async_trait]
pub trait Poller: Send + Sync {
    async fn poll(&self, cursor: Option<Cursor>) -> Result<PollPage, ConnectorError>;
    fn interval(&self) -> Duration;
    /// A cursor that makes `poll` walk the provider's history from `since_ms` (unix ms) to
    /// now, for `switchboard backfill`; `None` when this connector cannot backfill. The
    /// backfill keeps its own cursor, so it never moves the live poller's.
    fn backfill_cursor(&self, _since_ms: i64) -> Option<Cursor> {
        None
    }
}

/// Pure: same raw event in, same normalised events out. No I/O, no clock.
pub trait Normalizer: Send + Sync {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    pub id: String,
    pub idempotency_key: String,
    pub thread_key: String,
    pub text: String,
    pub attachment_urls: Vec<String>,
    /// The provider's id of the customer's latest message in the conversation, for channels
    /// that thread or quote replies (Telegram `reply_parameters`, WhatsApp `context`, email
    /// `In-Reply-To`). `None` when the conversation has no inbound message with an id.
    pub in_reply_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub provider_message_id: Option<String>,
}

#[async_trait]
pub trait Outbound: Send + Sync {
    async fn send(&self, msg: &OutboundMessage) -> Result<Sent, ConnectorError>;
}
