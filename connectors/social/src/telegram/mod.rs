//! Telegram Bot API (`kind = "telegram"`): updates by webhook (secret-token header) or by
//! long polling `getUpdates`; replies with `sendMessage`. See the README section "Telegram".

mod api;
mod config;
mod normalize;
mod poll;
mod send;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{
    ConfigError, ConfigResult, Connector, Env, Normalizer, Outbound, Poller, WebhookIngress,
};

pub use config::{Mode, TelegramConfig, DEFAULT_API_BASE};
pub use normalize::CHANNEL;
pub use poll::LIMIT;
pub use webhook::SECRET_HEADER;

pub struct Telegram {
    webhook: Option<webhook::TelegramWebhook>,
    poller: Option<poll::TelegramPoller>,
    normalizer: normalize::TelegramNormalizer,
    outbound: send::TelegramOutbound,
}

/// Builds a Telegram connector from its config table; `path` names it in errors. No I/O
/// beyond reading `_env` variables.
pub fn build(_id: &str, path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Telegram> {
    let s = Arc::new(config::Settings::from_table(path, table, env)?);
    let client = |timeout: Duration| {
        switchboard_core::http_client::client(timeout)
            .map_err(|e| ConfigError::new(format!("{path}.api_base"), e))
    };
    // The hub bounds each send itself; this only stops a hung connection.
    let send_api = Arc::new(api::Api {
        s: s.clone(),
        client: client(Duration::from_secs(30))?,
    });
    let (webhook, poller) = match s.mode {
        Mode::Webhook => (Some(webhook::TelegramWebhook { s: s.clone() }), None),
        Mode::Poll => {
            // The long poll holds the request open for `poll_timeout`: the client waits longer.
            let poll_api = Arc::new(api::Api {
                s: s.clone(),
                client: client(s.poll_timeout + Duration::from_secs(15))?,
            });
            (None, Some(poll::TelegramPoller { api: poll_api }))
        }
    };
    Ok(Telegram {
        webhook,
        poller,
        normalizer: normalize::TelegramNormalizer { s },
        outbound: send::TelegramOutbound { api: send_api },
    })
}

impl Connector for Telegram {
    fn kind(&self) -> &'static str {
        "telegram"
    }
    fn normalizer(&self) -> &dyn Normalizer {
        &self.normalizer
    }
    /// `None` in poll mode, so `/webhooks/{id}` answers 404: Telegram delivers by one means
    /// at a time.
    fn webhook(&self) -> Option<&dyn WebhookIngress> {
        self.webhook.as_ref().map(|w| w as &dyn WebhookIngress)
    }
    fn poller(&self) -> Option<&dyn Poller> {
        self.poller.as_ref().map(|p| p as &dyn Poller)
    }
    fn outbound(&self) -> Option<&dyn Outbound> {
        Some(&self.outbound)
    }
}
