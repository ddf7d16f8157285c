//! `kind = "woocommerce"`: the config table, validated without I/O.

use std::time::Duration;

use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_secret};
use switchboard_core::{ConfigResult, Env, Secret};

use crate::shopify::config::{check_base, check_interval};

/// `[[connectors]]` table of `kind = "woocommerce"`, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WooCommerceConfig {
    pub id: String,
    pub kind: String,
    /// The webhook's "Secret" (WooCommerce → Settings → Advanced → Webhooks).
    pub webhook_secret: Option<Secret>,
    pub webhook_secret_env: Option<String>,
    /// REST API key pair (`ck_…` / `cs_…`), sent as HTTP Basic auth when polling.
    pub consumer_key: Option<Secret>,
    pub consumer_key_env: Option<String>,
    pub consumer_secret: Option<Secret>,
    pub consumer_secret_env: Option<String>,
    /// `https://shop.example/wp-json/wc/v3`: per shop, so there is no default.
    pub api_base: Option<String>,
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: u64,
}

fn default_poll_interval() -> u64 {
    60
}

/// The validated settings the running connector uses. `Debug` never shows a secret.
#[derive(Debug)]
pub struct Settings {
    /// Never empty: WooCommerce's default secret is `""`, which anyone could sign with.
    pub webhook_secret: Secret,
    pub consumer_key: Secret,
    pub consumer_secret: Secret,
    pub api_base: String,
    pub poll_interval: Duration,
}

impl Settings {
    pub fn from_table(path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Self> {
        let c: WooCommerceConfig = parse_table(path, table)?;
        let webhook_secret = resolve_secret(
            path,
            "webhook_secret",
            c.webhook_secret,
            c.webhook_secret_env.as_deref(),
            env,
        )?;
        let consumer_key = resolve_secret(
            path,
            "consumer_key",
            c.consumer_key,
            c.consumer_key_env.as_deref(),
            env,
        )?;
        let consumer_secret = resolve_secret(
            path,
            "consumer_secret",
            c.consumer_secret,
            c.consumer_secret_env.as_deref(),
            env,
        )?;
        Ok(Settings {
            webhook_secret,
            consumer_key,
            consumer_secret,
            api_base: check_base(path, "api_base", c.api_base.as_deref())?,
            poll_interval: check_interval(path, c.poll_interval_secs)?,
        })
    }
}
