//! Switchboard connector SDK.
//!
//! Every connector crate depends on this crate only (never on the hub). It defines the
//! capability traits a connector implements, the event types that flow through the hub, the
//! error types the hub maps to HTTP answers and retries, the shared signature helpers, and the
//! config helpers that name the exact key that is wrong.

pub mod commerce;
pub mod config;
pub mod error;
pub mod event;
#[cfg(feature = "fake")]
pub mod fake;
pub mod http_client;
pub mod signature;
pub mod testkit;
pub mod traits;

pub use commerce::{money, Address, Invoice, LineItem, Order, Payment, Profile};
pub use config::{ConfigError, ConfigResult, Env, Secret};
pub use error::{ConnectorError, IngressError, NormalizeError, VerifyError};
pub use event::{
    Attachment, ClaimKind, Direction, EventBody, IdentityClaim, NormalizedEvent, RawEvent,
    StoredEvent,
};
pub use traits::{
    AttachmentContent, Connector, InboundRequest, Ingress, Normalizer, Outbound, OutboundMessage,
    PollPage, Poller, Reply, Sent, Verified, WebhookIngress,
};
