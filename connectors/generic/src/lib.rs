//! The generic webhook connector (`kind = "generic"`): the "API channel" any system can push
//! to. A configurable HMAC scheme checks the request; JSON Pointers (RFC 6901) map the payload
//! to a message and/or an order on the customer timeline.

mod config;
mod normalize;
mod send;
mod webhook;

use std::sync::Arc;

use switchboard_core::{ConfigResult, Connector, Env, Normalizer, Outbound, WebhookIngress};

pub use config::{GenericConfig, Mapping};

/// The built connector: its webhook and normaliser halves share the validated settings.
pub struct Generic {
    webhook: webhook::GenericWebhook,
    normalizer: normalize::GenericNormalizer,
    outbound: Option<send::GenericOutbound>,
}

/// Builds a generic connector from its config table; `path` names it in errors
/// (`connectors[0]`). No I/O beyond reading `_env` variables.
pub fn build(id: &str, path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Generic> {
    let settings = Arc::new(config::Settings::from_table(id, path, table, env)?);
    let outbound = match &settings.reply_url {
        Some(url) => Some(send::GenericOutbound {
            s: settings.clone(),
            url: url.clone(),
            client: switchboard_core::http_client::client(std::time::Duration::from_millis(
                settings.reply_timeout_ms,
            ))
            .map_err(|e| switchboard_core::ConfigError::new(format!("{path}.reply_url"), e))?,
        }),
        None => None,
    };
    Ok(Generic {
        webhook: webhook::GenericWebhook {
            s: settings.clone(),
        },
        normalizer: normalize::GenericNormalizer { s: settings },
        outbound,
    })
}

impl Connector for Generic {
    fn kind(&self) -> &'static str {
        "generic"
    }
    fn normalizer(&self) -> &dyn Normalizer {
        &self.normalizer
    }
    fn webhook(&self) -> Option<&dyn WebhookIngress> {
        Some(&self.webhook)
    }
    fn outbound(&self) -> Option<&dyn Outbound> {
        self.outbound.as_ref().map(|o| o as &dyn Outbound)
    }
}
