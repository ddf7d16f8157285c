//! Shopify (`kind = "shopify"`): orders, refunds and customers by webhook (HMAC-SHA256 of the
//! body, base64), and orders by polling the REST Admin API so that a lost webhook is
//! recovered. See its section in the README.

pub mod config;
pub mod normalize;
pub mod poll;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::{
    ConfigError, ConfigResult, Connector, Env, Normalizer, Poller, WebhookIngress,
};

pub use normalize::CHANNEL;

pub struct Shopify {
    webhook: webhook::ShopifyWebhook,
    poller: poll::ShopifyPoller,
    normalizer: normalize::ShopifyNormalizer,
}

/// Builds a Shopify connector from its config table; `path` names it in errors. No I/O beyond
/// reading `_env` variables.
pub fn build(_id: &str, path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Shopify> {
    let s = Arc::new(config::Settings::from_table(path, table, env)?);
    let client = switchboard_core::http_client::client(Duration::from_secs(30))
        .map_err(|e| ConfigError::new(format!("{path}.api_base"), e))?;
    Ok(Shopify {
        webhook: webhook::ShopifyWebhook { s: s.clone() },
        poller: poll::ShopifyPoller {
            s,
            client,
            hold_until: Mutex::new(None),
        },
        normalizer: normalize::ShopifyNormalizer,
    })
}

impl Connector for Shopify {
    fn kind(&self) -> &'static str {
        "shopify"
    }
    fn normalizer(&self) -> &dyn Normalizer {
        &self.normalizer
    }
    fn webhook(&self) -> Option<&dyn WebhookIngress> {
        Some(&self.webhook)
    }
    fn poller(&self) -> Option<&dyn Poller> {
        Some(&self.poller)
    }
}
