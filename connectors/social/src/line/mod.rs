//! LINE Messaging API (`kind = "line"`): signed webhooks (`x-line-signature`, base64
//! HMAC-SHA256 of the body with the channel secret), one raw event per `webhookEventId`,
//! replies through the push API with `X-Line-Retry-Key`.

mod config;
mod normalize;
mod send;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{
    ConfigError, ConfigResult, Connector, Env, Normalizer, Outbound, WebhookIngress,
};

pub use config::LineConfig;
pub use send::retry_key;

/// The header that carries a batch's `destination` (the bot's user id) with each event.
pub const DESTINATION_HEADER: &str = "x-sb-line-destination";

pub struct Line {
    webhook: webhook::LineWebhook,
    normalizer: normalize::LineNormalizer,
    outbound: send::LineOutbound,
}

/// Builds a LINE connector from its config table; `path` names it in errors. No I/O beyond
/// reading `_env` variables.
pub fn build(id: &str, path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Line> {
    let s = Arc::new(config::Settings::from_table(id, path, table, env)?);
    let client = switchboard_core::http_client::client(Duration::from_secs(30))
        .map_err(|e| ConfigError::new(format!("{path}.api_base"), e))?;
    Ok(Line {
        webhook: webhook::LineWebhook { s: s.clone() },
        normalizer: normalize::LineNormalizer { s: s.clone() },
        outbound: send::LineOutbound { s, client },
    })
}

impl Connector for Line {
    fn kind(&self) -> &'static str {
        "line"
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
