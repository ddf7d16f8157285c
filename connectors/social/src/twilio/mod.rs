//! Twilio Programmable Messaging (`kind = "twilio"`): SMS, MMS and WhatsApp through one
//! account. Inbound messages and status callbacks arrive as signed form POSTs at the
//! configured `public_url` (which points at `/webhooks/{id}`); replies go out through the
//! Messages API from the number the customer wrote to.

mod config;
mod normalize;
mod send;
pub mod signature;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{
    ConfigError, ConfigResult, Connector, Env, Normalizer, Outbound, WebhookIngress,
};

pub use config::{TwilioConfig, DEFAULT_API_BASE};
pub use normalize::{error_meaning, error_reason};
pub use send::send_error;

/// A request to Twilio's API that takes longer than this is abandoned and retried.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Twilio {
    webhook: webhook::TwilioWebhook,
    normalizer: normalize::TwilioNormalizer,
    outbound: send::TwilioOutbound,
}

/// Builds a Twilio connector from its config table; `path` names it in errors
/// (`connectors[0]`). No I/O beyond reading `_env` variables.
pub fn build(id: &str, path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Twilio> {
    let s = Arc::new(config::Settings::from_table(id, path, table, env)?);
    let client = switchboard_core::http_client::client(SEND_TIMEOUT)
        .map_err(|e| ConfigError::new(format!("{path}.api_base"), e))?;
    Ok(Twilio {
        webhook: webhook::TwilioWebhook { s: s.clone() },
        normalizer: normalize::TwilioNormalizer,
        outbound: send::TwilioOutbound { s, client },
    })
}

impl Connector for Twilio {
    fn kind(&self) -> &'static str {
        "twilio"
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
