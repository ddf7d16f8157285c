//! `kind = "twilio"`: the config table and its validation (no I/O beyond `_env` lookups).

use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_secret};
use switchboard_core::{ConfigError, ConfigResult, Env, Secret};

pub const DEFAULT_API_BASE: &str = "https://api.twilio.com";

/// `[[connectors]]` table of `kind = "twilio"`, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    pub id: String,
    pub kind: String,
    /// `AC…`: the account whose Messages API we call and whose numbers we answer on.
    pub account_sid: String,
    /// Signs every webhook (HMAC-SHA1 key) and authenticates every send (Basic password).
    pub auth_token: Option<Secret>,
    pub auth_token_env: Option<String>,
    /// The webhook URL exactly as configured at Twilio, query string included. Twilio signs
    /// this URL, not whatever Host the request reaches us with behind a proxy.
    pub public_url: String,
    /// Our sender (`+14155550100` or `whatsapp:+14155238886`) for conversations that do not
    /// name the number the customer wrote to.
    pub from: Option<String>,
    /// `MG…`: send through a Messaging Service (sender pool) instead of one number.
    pub messaging_service_sid: Option<String>,
    #[serde(default = "default_api_base")]
    pub api_base: String,
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.into()
}

/// The validated settings the running connector uses.
#[derive(Debug)]
pub struct Settings {
    pub account_sid: String,
    pub auth_token: Secret,
    pub public_url: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    /// Without a trailing slash.
    pub api_base: String,
}

fn is_http_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.parse::<http::Uri>()
            .is_ok_and(|uri| uri.host().is_some_and(|h| !h.is_empty()))
}

/// Twilio SIDs are two letters and 32 hex digits; we only insist on what keeps the API path
/// and form safe (ASCII letters and digits).
fn check_sid(key: String, v: &str, prefix: &str) -> ConfigResult<String> {
    let v = v.trim();
    if v.is_empty() {
        return Err(ConfigError::new(key, "must not be empty"));
    }
    if !v.chars().all(|c| c.is_ascii_alphanumeric()) || !v.starts_with(prefix) {
        return Err(ConfigError::new(
            key,
            format!("`{v}` is not a Twilio SID (`{prefix}` followed by letters and digits)"),
        ));
    }
    Ok(v.to_string())
}

impl Settings {
    pub fn from_table(
        id: &str,
        path: &str,
        table: toml::Value,
        env: Env<'_>,
    ) -> ConfigResult<Self> {
        let c: TwilioConfig = parse_table(path, table)?;
        let account_sid = check_sid(format!("{path}.account_sid"), &c.account_sid, "AC")?;
        let auth_token = resolve_secret(
            path,
            "auth_token",
            c.auth_token,
            c.auth_token_env.as_deref(),
            env,
        )?;
        let public_url = c.public_url.trim().to_string();
        if !is_http_url(&public_url) {
            return Err(ConfigError::new(
                format!("{path}.public_url"),
                format!(
                    "`{public_url}` is not an absolute http(s) URL (use the exact webhook URL \
                     configured at Twilio, e.g. https://hub.example.com/webhooks/{id})"
                ),
            ));
        }
        let messaging_service_sid = c
            .messaging_service_sid
            .as_deref()
            .map(|s| check_sid(format!("{path}.messaging_service_sid"), s, "MG"))
            .transpose()?;
        let from = c
            .from
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty());
        if let Some(f) = &from {
            if f.contains('|') || f.chars().any(char::is_control) {
                return Err(ConfigError::new(
                    format!("{path}.from"),
                    format!("`{f}` is not a phone number or channel address"),
                ));
            }
        }
        if from.is_none() && messaging_service_sid.is_none() {
            return Err(ConfigError::new(
                format!("{path}.from"),
                "missing (set `from` or `messaging_service_sid`)",
            ));
        }
        let api_base = c.api_base.trim().trim_end_matches('/').to_string();
        if !is_http_url(&api_base) {
            return Err(ConfigError::new(
                format!("{path}.api_base"),
                format!("`{api_base}` is not an http(s) URL"),
            ));
        }
        Ok(Settings {
            account_sid,
            auth_token,
            public_url,
            from,
            messaging_service_sid,
            api_base,
        })
    }
}
