//! Meta Graph connectors: `messenger` (Facebook Pages), `instagram` (Instagram Messaging with
//! Instagram Login) and `whatsapp` (WhatsApp Cloud API). The three share one webhook scheme
//! (`X-Hub-Signature-256` over the raw body with the App Secret, and the `hub.challenge` GET
//! handshake) and one error format; they differ in envelope, payload and send body.

mod config;
mod normalize;
mod send;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{
    ConfigError, ConfigResult, Connector, Env, Normalizer, Outbound, WebhookIngress,
};

pub use config::Settings;
pub use send::{map_error, MESSENGER_WINDOW, WHATSAPP_WINDOW};
pub use webhook::{query_param, sign, SIGNATURE_HEADER};

/// Which of the three Meta products a connector speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Messenger,
    Instagram,
    Whatsapp,
}

impl Kind {
    pub fn parse(kind: &str) -> Option<Kind> {
        match kind {
            "messenger" => Some(Kind::Messenger),
            "instagram" => Some(Kind::Instagram),
            "whatsapp" => Some(Kind::Whatsapp),
            _ => None,
        }
    }

    /// The kind name, also the channel name agents see.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Messenger => "messenger",
            Kind::Instagram => "instagram",
            Kind::Whatsapp => "whatsapp",
        }
    }

    /// The `object` of the webhook envelope this kind receives.
    pub fn object(self) -> &'static str {
        match self {
            Kind::Messenger => "page",
            Kind::Instagram => "instagram",
            Kind::Whatsapp => "whatsapp_business_account",
        }
    }

    /// The network part of identity scopes (`messenger:<page_id>`).
    pub fn network(self) -> &'static str {
        self.as_str()
    }
}

/// The kinds this module builds.
pub const KINDS: &[&str] = &["messenger", "instagram", "whatsapp"];

/// A built Meta connector: webhook, normaliser and sender share the validated settings.
pub struct Meta {
    kind: Kind,
    webhook: webhook::MetaWebhook,
    normalizer: normalize::MetaNormalizer,
    outbound: send::MetaOutbound,
}

/// Sends are bounded by the hub's own send timeout too; this only caps a hung connection.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the connector of `kind` from its config table; `path` names it in errors
/// (`connectors[0]`). No I/O beyond reading `_env` variables.
pub fn build(
    kind: Kind,
    id: &str,
    path: &str,
    table: toml::Value,
    env: Env<'_>,
) -> ConfigResult<Meta> {
    let s = Arc::new(Settings::from_table(kind, id, path, table, env)?);
    let client = switchboard_core::http_client::client(CLIENT_TIMEOUT)
        .map_err(|e| ConfigError::new(format!("{path}.api_base"), e))?;
    Ok(Meta {
        kind,
        webhook: webhook::MetaWebhook { s: s.clone() },
        normalizer: normalize::MetaNormalizer { kind },
        outbound: send::MetaOutbound { s, client },
    })
}

impl Connector for Meta {
    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }
    fn normalizer(&self) -> &dyn Normalizer {
        &self.normalizer
    }
    fn webhook(&self) -> Option<&dyn WebhookIngress> {
        Some(&self.webhook)
    }
    fn outbound(&self) -> Option<&dyn Outbound> {
        Some(&self.outbound)
    }
}
