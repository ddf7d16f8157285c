//! `kind = "erpnext"`: the config table, validated without I/O.

use std::time::Duration;

use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_optional_secret, resolve_secret};
use switchboard_core::{ConfigResult, Env, Secret};

use crate::common::{api_base, check_interval, check_streams};

/// The doctypes this connector maps, in the default order.
pub const DOCTYPES: &[&str] = &["Customer", "Sales Order", "Sales Invoice", "Payment Entry"];

/// `[[connectors]]` table of `kind = "erpnext"`, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErpNextConfig {
    pub id: String,
    pub kind: String,
    /// The site root (`https://erp.example.com`); no default, every site is its own.
    pub api_base: Option<String>,
    /// A user's API key and secret: `Authorization: token <key>:<secret>`.
    pub api_key: Option<Secret>,
    pub api_key_env: Option<String>,
    pub api_secret: Option<Secret>,
    pub api_secret_env: Option<String>,
    /// The Webhook doctype's "Webhook Secret"; set, it enables `/webhooks/{id}`.
    pub webhook_secret: Option<Secret>,
    pub webhook_secret_env: Option<String>,
    #[serde(default = "default_doctypes")]
    pub doctypes: Vec<String>,
    #[serde(default = "default_interval")]
    pub poll_interval_secs: u64,
}

fn default_doctypes() -> Vec<String> {
    DOCTYPES.iter().map(|d| d.to_string()).collect()
}
fn default_interval() -> u64 {
    60
}

/// The validated settings. `Debug` never shows a secret.
#[derive(Debug)]
pub struct Settings {
    pub api_base: String,
    pub api_key: Secret,
    pub api_secret: Secret,
    pub webhook_secret: Option<Secret>,
    pub doctypes: Vec<String>,
    pub interval: Duration,
}

impl Settings {
    pub fn from_table(path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Self> {
        let c: ErpNextConfig = parse_table(path, table)?;
        let api_base = api_base(path, c.api_base, "https://erp.example.com")?;
        let api_key = resolve_secret(path, "api_key", c.api_key, c.api_key_env.as_deref(), env)?;
        let api_secret = resolve_secret(
            path,
            "api_secret",
            c.api_secret,
            c.api_secret_env.as_deref(),
            env,
        )?;
        let webhook_secret = resolve_optional_secret(
            path,
            "webhook_secret",
            c.webhook_secret,
            c.webhook_secret_env.as_deref(),
            env,
        )?;
        check_streams(path, "doctypes", &c.doctypes, DOCTYPES)?;
        let interval = check_interval(path, c.poll_interval_secs)?;
        Ok(Settings {
            api_base,
            api_key,
            api_secret,
            webhook_secret,
            doctypes: c.doctypes,
            interval,
        })
    }
}
