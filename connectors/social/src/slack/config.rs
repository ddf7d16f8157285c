//! `kind = "slack"`: the config table, validated without I/O.

use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_secret};
use switchboard_core::{ConfigError, ConfigResult, Env, Secret};

/// `[[connectors]]` table of `kind = "slack"`, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub id: String,
    pub kind: String,
    /// The app's "Signing Secret" (Basic Information page): signs every request.
    pub signing_secret: Option<Secret>,
    pub signing_secret_env: Option<String>,
    /// The bot user OAuth token (`xoxb-…`), for `chat.postMessage`.
    pub bot_token: Option<Secret>,
    pub bot_token_env: Option<String>,
    /// The Web API base URL; tests point it at a fake provider.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// How far `X-Slack-Request-Timestamp` may be from our clock: replay protection.
    #[serde(default = "default_tolerance")]
    pub timestamp_tolerance_secs: i64,
}

fn default_api_base() -> String {
    "https://slack.com/api".into()
}
fn default_tolerance() -> i64 {
    300
}

#[derive(Debug)]
pub struct Settings {
    pub connector_id: String,
    pub signing_secret: Secret,
    pub bot_token: Secret,
    /// Without a trailing `/`.
    pub api_base: String,
    pub timestamp_tolerance_secs: i64,
}

impl Settings {
    pub fn from_table(
        id: &str,
        path: &str,
        table: toml::Value,
        env: Env<'_>,
    ) -> ConfigResult<Self> {
        let c: SlackConfig = parse_table(path, table)?;
        let signing_secret = resolve_secret(
            path,
            "signing_secret",
            c.signing_secret,
            c.signing_secret_env.as_deref(),
            env,
        )?;
        let bot_token = resolve_secret(
            path,
            "bot_token",
            c.bot_token,
            c.bot_token_env.as_deref(),
            env,
        )?;
        let api_base = check_base(format!("{path}.api_base"), &c.api_base)?;
        if c.timestamp_tolerance_secs < 1 {
            return Err(ConfigError::new(
                format!("{path}.timestamp_tolerance_secs"),
                "must be at least 1 (Slack's own SDK uses 300)",
            ));
        }
        Ok(Settings {
            connector_id: id.to_string(),
            signing_secret,
            bot_token,
            api_base,
            timestamp_tolerance_secs: c.timestamp_tolerance_secs,
        })
    }
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
