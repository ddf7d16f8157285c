//! Stripe (`kind = "stripe"`): signed webhooks (`Stripe-Signature`) and/or polling
//! `/v1/events` with a backfill; payments, refunds, disputes, checkouts, invoices and
//! customers become business documents. See its section in the README.

mod config;
mod normalize;
mod poll;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{
    ConfigError, ConfigResult, Connector, Env, Normalizer, Poller, WebhookIngress,
};

pub use config::{StripeConfig, DEFAULT_API_BASE, DEFAULT_TOLERANCE_SECS};
pub use normalize::{claims_of, normalize, payment_scope, CHANNEL};
pub use poll::{PollCursor, DEFAULT_RETRY_AFTER, LIMIT};
pub use webhook::{parse_header, sign, verify_header, SIGNATURE_HEADER};

pub struct Stripe {
    webhook: Option<webhook::StripeWebhook>,
    poller: Option<poll::StripePoller>,
    normalizer: normalize::StripeNormalizer,
}

/// Builds a Stripe connector from its config table; `path` names it in errors. No I/O beyond
/// reading `_env` variables.
pub fn build(_id: &str, path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Stripe> {
    let s = Arc::new(config::Settings::from_table(path, table, env)?);
    let webhook = s
        .webhook_secret
        .is_some()
        .then(|| webhook::StripeWebhook { s: s.clone() });
    let poller = match &s.api_key {
        Some(key) => Some(poll::StripePoller {
            s: s.clone(),
            api_key: key.clone(),
            client: switchboard_core::http_client::client(Duration::from_secs(30))
                .map_err(|e| ConfigError::new(format!("{path}.api_base"), e))?,
        }),
        None => None,
    };
    Ok(Stripe {
        webhook,
        poller,
        normalizer: normalize::StripeNormalizer,
    })
}

impl Connector for Stripe {
    fn kind(&self) -> &'static str {
        "stripe"
    }
    fn normalizer(&self) -> &dyn Normalizer {
        &self.normalizer
    }
    /// `None` without a `webhook_secret`, so `/webhooks/{id}` answers 404.
    fn webhook(&self) -> Option<&dyn WebhookIngress> {
        self.webhook.as_ref().map(|w| w as &dyn WebhookIngress)
    }
    /// `None` without an `api_key`.
    fn poller(&self) -> Option<&dyn Poller> {
        self.poller.as_ref().map(|p| p as &dyn Poller)
    }
}
