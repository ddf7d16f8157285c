//! `kind = "line"`: the config table, validated without I/O.

use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_secret};
use switchboard_core::{ConfigError, ConfigResult, Env, Secret};

/// `[[connectors]]` table of `kind = "line"`, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    pub id: String,
    pub kind: String,
    /// Signs every webhook (`x-line-signature`); the console's "Channel secret".
    pub channel_secret: Option<Secret>,
    pub channel_secret_env: Option<String>,
    /// A long-lived channel access token, for the push API.
    pub channel_access_token: Option<Secret>,
    pub channel_access_token_env: Option<String>,
    /// The Messaging API base URL; tests point it at a fake provider.
    #[serde(default = "default_api_base")]
    pub api_base: String,
}

fn default_api_base() -> String {
    "https://api.line.me".into()
}

/// The validated settings the running connector uses.
#[derive(Debug)]
pub struct Settings {
    pub connector_id: String,
    pub channel_secret: Secret,
    pub channel_access_token: Secret,
    /// Without a trailing `/`.
    pub api_base: String,
}

/// An `http(s)://host…` base URL without its trailing `/`, or an error naming `key`.
fn check_base(key: String, u: &str) -> ConfigResult<String> {
    let ok = (u.starts_with("http://") || u.starts_with("https://"))
        && u.parse::<http::Uri>().is_ok_and(|uri| uri.host().is_some());
    if !ok {
        return Err(ConfigError::new(
            key,
            format!("`{u}` is not an http(s) URL"),
        ));
    }
    Ok(u.trim_end_matches('/').to_string())
}

impl Settings {
    pub fn from_table(
        id: &str,
        path: &str,
        table: toml::Value,
        env: Env<'_>,
    ) -> ConfigResult<Self> {
        let c: LineConfig = parse_table(path, table)?;
        let channel_secret = resolve_secret(
            path,
            "channel_secret",
            c.channel_secret,
            c.channel_secret_env.as_deref(),
            env,
        )?;
        let channel_access_token = resolve_secret(
            path,
            "channel_access_token",
            c.channel_access_token,
            c.channel_access_token_env.as_deref(),
            env,
        )?;
        let api_base = check_base(format!("{path}.api_base"), &c.api_base)?;
        Ok(Settings {
            connector_id: id.to_string(),
            channel_secret,
            channel_access_token,
            api_base,
        })
    }
}
