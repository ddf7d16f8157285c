//! ERPNext / Frappe (`kind = "erpnext"`): polls customers, sales orders, sales invoices and
//! payment entries over the REST API, and, with a `webhook_secret`, takes the Webhook
//! doctype's signed deliveries too. Both give a version the same event id, so whichever comes
//! second is a duplicate. See its section in the README.

mod config;
mod normalize;
mod poll;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{
    ConfigError, ConfigResult, Connector, Env, Normalizer, Poller, WebhookIngress,
};

pub use config::{ErpNextConfig, DOCTYPES};
pub use normalize::CHANNEL;
pub use poll::{list_query, Position, PAGE};
pub use webhook::{event_id, SIGNATURE_HEADER};

pub struct ErpNext {
    webhook: Option<webhook::ErpNextWebhook>,
    poller: poll::ErpNextPoller,
    normalizer: normalize::ErpNextNormalizer,
}

/// Builds an ERPNext connector from its config table; `path` names it in errors. No I/O
/// beyond reading `_env` variables.
pub fn build(_id: &str, path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<ErpNext> {
    let s = Arc::new(config::Settings::from_table(path, table, env)?);
    let client = switchboard_core::http_client::client(Duration::from_secs(30))
        .map_err(|e| ConfigError::new(format!("{path}.api_base"), e))?;
    let webhook = s
        .webhook_secret
        .is_some()
        .then(|| webhook::ErpNextWebhook { s: s.clone() });
    Ok(ErpNext {
        webhook,
        poller: poll::ErpNextPoller { s, client },
        normalizer: normalize::ErpNextNormalizer,
    })
}

impl Connector for ErpNext {
    fn kind(&self) -> &'static str {
        "erpnext"
    }
    fn normalizer(&self) -> &dyn Normalizer {
        &self.normalizer
    }
    /// `None` without a `webhook_secret`, so `/webhooks/{id}` answers 404 rather than taking
    /// unsigned documents.
    fn webhook(&self) -> Option<&dyn WebhookIngress> {
        self.webhook.as_ref().map(|w| w as &dyn WebhookIngress)
    }
    fn poller(&self) -> Option<&dyn Poller> {
        Some(&self.poller)
    }
}
