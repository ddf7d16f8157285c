//! WooCommerce (`kind = "woocommerce"`): orders and customers by webhook (HMAC-SHA256 of the
//! body, base64; the unsigned creation ping is answered and stored nowhere), and orders by
//! polling the REST API v3 so that a missed webhook is recovered (WooCommerce never retries
//! one). See its section in the README.

pub mod config;
pub mod normalize;
pub mod poll;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{
    ConfigError, ConfigResult, Connector, Env, Normalizer, Poller, WebhookIngress,
};

pub use normalize::CHANNEL;

pub struct WooCommerce {
    webhook: webhook::WooWebhook,
    poller: poll::WooPoller,
    normalizer: normalize::WooNormalizer,
}

/// Builds a WooCommerce connector from its config table; `path` names it in errors. No I/O
/// beyond reading `_env` variables.
pub fn build(_id: &str, path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<WooCommerce> {
    let s = Arc::new(config::Settings::from_table(path, table, env)?);
    let client = switchboard_core::http_client::client(Duration::from_secs(30))
        .map_err(|e| ConfigError::new(format!("{path}.api_base"), e))?;
    Ok(WooCommerce {
        webhook: webhook::WooWebhook { s: s.clone() },
        poller: poll::WooPoller { s, client },
        normalizer: normalize::WooNormalizer,
    })
}

impl Connector for WooCommerce {
    fn kind(&self) -> &'static str {
        "woocommerce"
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
