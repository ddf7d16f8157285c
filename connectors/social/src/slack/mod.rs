//! Slack Events API (`kind = "slack"`): requests signed with `v0=HMAC-SHA256("v0:ts:body")`
//! within a timestamp tolerance, the `url_verification` handshake, one raw event per outer
//! `event_id`, slash commands, and replies through `chat.postMessage` into the thread.

mod config;
mod normalize;
mod send;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{
    ConfigError, ConfigResult, Connector, Env, Normalizer, Outbound, WebhookIngress,
};

pub use config::SlackConfig;

/// An `application/x-www-form-urlencoded` body as pairs.
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

pub struct Slack {
    webhook: webhook::SlackWebhook,
    normalizer: normalize::SlackNormalizer,
    outbound: send::SlackOutbound,
}

/// Builds a Slack connector from its config table; `path` names it in errors. No I/O beyond
/// reading `_env` variables.
pub fn build(id: &str, path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Slack> {
    let s = Arc::new(config::Settings::from_table(id, path, table, env)?);
    let client = switchboard_core::http_client::client(Duration::from_secs(30))
        .map_err(|e| ConfigError::new(format!("{path}.api_base"), e))?;
    Ok(Slack {
        webhook: webhook::SlackWebhook { s: s.clone() },
        normalizer: normalize::SlackNormalizer { s: s.clone() },
        outbound: send::SlackOutbound { s, client },
    })
}

impl Connector for Slack {
    fn kind(&self) -> &'static str {
        "slack"
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
