//! `kind = "odoo"`: the config table, validated without I/O.

use std::time::Duration;

use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_secret};
use switchboard_core::{ConfigError, ConfigResult, Env, Secret};

use crate::common::{api_base, check_interval, check_streams};

/// The models this connector reads, in the default order (partners first, so that a new
/// customer's profile usually lands before its orders).
pub const MODELS: &[&str] = &["res.partner", "sale.order", "account.move"];

/// Which external API the server speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    /// `POST /json/2/<model>/search_read` with a bearer API key (Odoo 19+). A server that
    /// answers 404 there is switched to JSON-RPC automatically.
    #[default]
    Json2,
    /// `POST /jsonrpc` `execute_kw` after `common.authenticate` (servers before 19).
    Jsonrpc,
}

/// `[[connectors]]` table of `kind = "odoo"`, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdooConfig {
    pub id: String,
    pub kind: String,
    /// The server root (`https://acme.odoo.com`); no default, every customer has their own.
    pub api_base: Option<String>,
    /// Sent as `X-Odoo-Database` (JSON-2) and to `authenticate`/`execute_kw` (JSON-RPC).
    pub database: Option<String>,
    /// The login of the API key's user, for JSON-RPC's `authenticate`.
    pub username: Option<String>,
    pub api_key: Option<Secret>,
    pub api_key_env: Option<String>,
    #[serde(default = "default_models")]
    pub models: Vec<String>,
    #[serde(default = "default_interval")]
    pub poll_interval_secs: u64,
    #[serde(default)]
    pub api: ApiKind,
}

fn default_models() -> Vec<String> {
    MODELS.iter().map(|m| m.to_string()).collect()
}
fn default_interval() -> u64 {
    60
}

/// The validated settings. `Debug` never shows the key.
#[derive(Debug)]
pub struct Settings {
    pub api_base: String,
    pub database: String,
    pub username: String,
    pub api_key: Secret,
    pub models: Vec<String>,
    pub interval: Duration,
    pub api: ApiKind,
}

fn required(path: &str, key: &str, v: Option<String>, what: &str) -> ConfigResult<String> {
    match v.map(|s| s.trim().to_string()) {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(ConfigError::new(
            format!("{path}.{key}"),
            "must not be empty",
        )),
        None => Err(ConfigError::new(
            format!("{path}.{key}"),
            format!("missing ({what})"),
        )),
    }
}

impl Settings {
    pub fn from_table(path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Self> {
        let c: OdooConfig = parse_table(path, table)?;
        let api_base = api_base(path, c.api_base, "https://acme.odoo.com")?;
        let database = required(path, "database", c.database, "the Odoo database name")?;
        let username = required(path, "username", c.username, "the API key's user login")?;
        let api_key = resolve_secret(path, "api_key", c.api_key, c.api_key_env.as_deref(), env)?;
        check_streams(path, "models", &c.models, MODELS)?;
        let interval = check_interval(path, c.poll_interval_secs)?;
        Ok(Settings {
            api_base,
            database,
            username,
            api_key,
            models: c.models,
            interval,
            api: c.api,
        })
    }
}
