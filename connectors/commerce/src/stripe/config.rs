use std::time::Duration;

use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_optional_secret};
use switchboard_core::{ConfigError, ConfigResult, Env, Secret};

/// Stripe's API, where `/v1/events` lives.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// Stripe's own default tolerance (stripe-python `Webhook.DEFAULT_TOLERANCE`).
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
pub const DEFAULT_POLL_INTERVAL_SECS: u64 = 60;

/// `[[connectors]]` table of `kind = "stripe"`, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    pub id: String,
    pub kind: String,
    /// The endpoint's signing secret (`whsec_…`), used as-is as the HMAC key; without it
    /// the connector has no webhook endpoint and only polls.
    pub webhook_secret: Option<Secret>,
    pub webhook_secret_env: Option<String>,
    /// A secret or restricted key (`sk_…` / `rk_…`) with read access to events; without it
    /// the connector only receives webhooks and cannot poll or backfill.
    pub api_key: Option<Secret>,
    pub api_key_env: Option<String>,
    /// How old a signed timestamp may be; 0 turns the check off (as in Stripe's SDKs).
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    #[serde(default = "default_api_base")]
    pub api_base: String,
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: u64,
}

fn default_tolerance() -> u64 {
    DEFAULT_TOLERANCE_SECS
}
fn default_api_base() -> String {
    DEFAULT_API_BASE.into()
}
fn default_poll_interval() -> u64 {
    DEFAULT_POLL_INTERVAL_SECS
}

/// The validated settings the running connector uses.
#[derive(Debug)]
pub struct Settings {
    /// `None`: no webhook endpoint (poll only).
    pub webhook_secret: Option<Secret>,
    /// `None`: no poller (webhooks only).
    pub api_key: Option<Secret>,
    pub tolerance_secs: i64,
    /// Without a trailing slash.
    pub api_base: String,
    pub poll_interval: Duration,
}

impl Settings {
    pub fn from_table(path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Self> {
        let c: StripeConfig = parse_table(path, table)?;
        let webhook_secret = resolve_optional_secret(
            path,
            "webhook_secret",
            c.webhook_secret,
            c.webhook_secret_env.as_deref(),
            env,
        )?;
        let api_key =
            resolve_optional_secret(path, "api_key", c.api_key, c.api_key_env.as_deref(), env)?;
        if webhook_secret.is_none() && api_key.is_none() {
            return Err(ConfigError::new(
                format!("{path}.webhook_secret"),
                "missing: set `webhook_secret` (or `webhook_secret_env`) to receive webhooks, \
                 `api_key` (or `api_key_env`) to poll, or both",
            ));
        }
        let base = c.api_base.trim().trim_end_matches('/').to_string();
        let ok = (base.starts_with("http://") || base.starts_with("https://"))
            && base.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
        if !ok {
            return Err(ConfigError::new(
                format!("{path}.api_base"),
                format!("`{}` is not an http(s) URL", c.api_base),
            ));
        }
        if c.tolerance_secs > 86_400 {
            return Err(ConfigError::new(
                format!("{path}.tolerance_secs"),
                "must be at most 86400 (0 turns the check off)",
            ));
        }
        if c.poll_interval_secs == 0 || c.poll_interval_secs > 86_400 {
            return Err(ConfigError::new(
                format!("{path}.poll_interval_secs"),
                "must be between 1 and 86400",
            ));
        }
        Ok(Settings {
            webhook_secret,
            api_key,
            tolerance_secs: c.tolerance_secs as i64,
            api_base: base,
            poll_interval: Duration::from_secs(c.poll_interval_secs),
        })
    }
}
