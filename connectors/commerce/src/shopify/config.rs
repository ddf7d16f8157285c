//! `kind = "shopify"`: the config table, validated without I/O.

use std::time::Duration;

use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_secret};
use switchboard_core::{ConfigError, ConfigResult, Env, Secret};

/// `[[connectors]]` table of `kind = "shopify"`, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyConfig {
    pub id: String,
    pub kind: String,
    /// The app's client secret: Shopify signs every webhook body with it.
    pub webhook_secret: Option<Secret>,
    pub webhook_secret_env: Option<String>,
    /// Admin API access token (`shpat_…`), sent as `X-Shopify-Access-Token` when polling.
    pub access_token: Option<Secret>,
    pub access_token_env: Option<String>,
    /// `https://<shop>.myshopify.com/admin/api/<version>`: per shop, so there is no default.
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
    pub webhook_secret: Secret,
    pub access_token: Secret,
    /// Without a trailing `/`.
    pub api_base: String,
    pub poll_interval: Duration,
}

/// An http(s) URL with a host, without its trailing `/`; the error names `key`.
pub(crate) fn check_base(path: &str, key: &str, raw: Option<&str>) -> ConfigResult<String> {
    let Some(raw) = raw else {
        return Err(ConfigError::new(
            format!("{path}.{key}"),
            "missing (the shop's own API URL; there is no default)",
        ));
    };
    let base = raw.trim().trim_end_matches('/').to_string();
    let ok = (base.starts_with("http://") || base.starts_with("https://"))
        && base.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
    if !ok {
        return Err(ConfigError::new(
            format!("{path}.{key}"),
            format!("`{raw}` is not an http(s) URL"),
        ));
    }
    Ok(base)
}

/// Between 1 second and 1 day; the error names `poll_interval_secs`.
pub(crate) fn check_interval(path: &str, secs: u64) -> ConfigResult<Duration> {
    if !(1..=86_400).contains(&secs) {
        return Err(ConfigError::new(
            format!("{path}.poll_interval_secs"),
            "must be between 1 and 86400",
        ));
    }
    Ok(Duration::from_secs(secs))
}

impl Settings {
    pub fn from_table(path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Self> {
        let c: ShopifyConfig = parse_table(path, table)?;
        let webhook_secret = resolve_secret(
            path,
            "webhook_secret",
            c.webhook_secret,
            c.webhook_secret_env.as_deref(),
            env,
        )?;
        let access_token = resolve_secret(
            path,
            "access_token",
            c.access_token,
            c.access_token_env.as_deref(),
            env,
        )?;
        Ok(Settings {
            webhook_secret,
            access_token,
            api_base: check_base(path, "api_base", c.api_base.as_deref())?,
            poll_interval: check_interval(path, c.poll_interval_secs)?,
        })
    }
}
