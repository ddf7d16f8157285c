//! Odoo (`kind = "odoo"`): polls partners, sale orders and customer invoices over the JSON-2
//! API (Odoo 19+) or JSON-RPC (older servers, also chosen automatically when JSON-2 answers
//! 404). Poll only: Odoo has no signed outgoing webhooks. See its section in the README.

mod api;
mod config;
mod normalize;
mod poll;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{ConfigError, ConfigResult, Connector, Env, Normalizer, Poller};

pub use api::LIMIT;
pub use config::{ApiKind, OdooConfig, MODELS};
pub use normalize::CHANNEL;
pub use poll::{domain, fields, Position};

pub struct Odoo {
    poller: poll::OdooPoller,
    normalizer: normalize::OdooNormalizer,
}

/// Builds an Odoo connector from its config table; `path` names it in errors. No I/O beyond
/// reading `_env` variables.
pub fn build(id: &str, path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Odoo> {
    let s = Arc::new(config::Settings::from_table(path, table, env)?);
    let client = switchboard_core::http_client::client(Duration::from_secs(30))
        .map_err(|e| ConfigError::new(format!("{path}.api_base"), e))?;
    Ok(Odoo {
        poller: poll::OdooPoller {
            api: Arc::new(api::Api::new(id, s, client)),
        },
        normalizer: normalize::OdooNormalizer,
    })
}

impl Odoo {
    /// Whether polls go over JSON-RPC (configured, or after JSON-2 answered 404).
    pub fn uses_jsonrpc(&self) -> bool {
        self.poller.api.uses_jsonrpc()
    }
}

impl Connector for Odoo {
    fn kind(&self) -> &'static str {
        "odoo"
    }
    fn normalizer(&self) -> &dyn Normalizer {
        &self.normalizer
    }
    fn poller(&self) -> Option<&dyn Poller> {
        Some(&self.poller)
    }
}
