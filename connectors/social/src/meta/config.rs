//! Config tables of the three Meta kinds, validated without I/O into one `Settings`.

use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_secret};
use switchboard_core::{ConfigError, ConfigResult, Env, Secret};

use super::Kind;

const GRAPH_FACEBOOK: &str = "https://graph.facebook.com/v21.0";
const GRAPH_INSTAGRAM: &str = "https://graph.instagram.com/v21.0";

/// `kind = "messenger"`: a Facebook Page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessengerConfig {
    #[allow(dead_code)]
    pub id: Option<String>,
    #[allow(dead_code)]
    pub kind: Option<String>,
    /// Signs every webhook delivery (`X-Hub-Signature-256`).
    pub app_secret: Option<Secret>,
    pub app_secret_env: Option<String>,
    /// The token typed into the app dashboard; Meta echoes it in the GET handshake.
    pub verify_token: Option<Secret>,
    pub verify_token_env: Option<String>,
    /// The Page that receives messages and sends replies.
    pub page_id: String,
    pub page_access_token: Option<Secret>,
    pub page_access_token_env: Option<String>,
    pub api_base: Option<String>,
}

/// `kind = "instagram"`: an Instagram professional account (Instagram Login).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstagramConfig {
    #[allow(dead_code)]
    pub id: Option<String>,
    #[allow(dead_code)]
    pub kind: Option<String>,
    pub app_secret: Option<Secret>,
    pub app_secret_env: Option<String>,
    pub verify_token: Option<Secret>,
    pub verify_token_env: Option<String>,
    /// The Instagram professional account id (`IG_ID`) replies are sent from.
    pub account_id: String,
    pub access_token: Option<Secret>,
    pub access_token_env: Option<String>,
    pub api_base: Option<String>,
}

/// `kind = "whatsapp"`: one WhatsApp Business phone number on the Cloud API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappConfig {
    #[allow(dead_code)]
    pub id: Option<String>,
    #[allow(dead_code)]
    pub kind: Option<String>,
    pub app_secret: Option<Secret>,
    pub app_secret_env: Option<String>,
    pub verify_token: Option<Secret>,
    pub verify_token_env: Option<String>,
    /// The business phone number's id (not the number itself) replies are sent from.
    pub phone_number_id: String,
    /// A system-user token with `whatsapp_business_messaging`.
    pub access_token: Option<Secret>,
    pub access_token_env: Option<String>,
    pub api_base: Option<String>,
}

/// The validated settings the running connector uses.
#[derive(Debug)]
pub struct Settings {
    pub kind: Kind,
    pub connector_id: String,
    pub app_secret: Secret,
    pub verify_token: Secret,
    /// Page id, Instagram account id or WhatsApp phone number id: the sending account.
    pub account_id: String,
    /// Page access token, Instagram user token or WhatsApp system-user token.
    pub access_token: Secret,
    /// Without a trailing slash.
    pub api_base: String,
}

/// An id that goes into a URL path: Meta ids are digits; letters, `_` and `-` are tolerated.
fn check_id(key: String, v: &str) -> ConfigResult<String> {
    let v = v.trim();
    if v.is_empty() {
        return Err(ConfigError::new(key, "must not be empty"));
    }
    if v.len() > 64
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::new(
            key,
            format!("`{v}` is not a Meta id (digits, at most 64 characters)"),
        ));
    }
    Ok(v.to_string())
}

fn check_base(key: String, v: Option<String>, default: &str) -> ConfigResult<String> {
    let Some(u) = v else {
        return Ok(default.to_string());
    };
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
        kind: Kind,
        id: &str,
        path: &str,
        table: toml::Value,
        env: Env<'_>,
    ) -> ConfigResult<Self> {
        let secret = |key: &str, direct: Option<Secret>, var: Option<String>| {
            resolve_secret(path, key, direct, var.as_deref(), env)
        };
        let (app_secret, verify_token, account_id, access_token, api_base) = match kind {
            Kind::Messenger => {
                let c: MessengerConfig = parse_table(path, table)?;
                (
                    secret("app_secret", c.app_secret, c.app_secret_env)?,
                    secret("verify_token", c.verify_token, c.verify_token_env)?,
                    check_id(format!("{path}.page_id"), &c.page_id)?,
                    secret(
                        "page_access_token",
                        c.page_access_token,
                        c.page_access_token_env,
                    )?,
                    check_base(format!("{path}.api_base"), c.api_base, GRAPH_FACEBOOK)?,
                )
            }
            Kind::Instagram => {
                let c: InstagramConfig = parse_table(path, table)?;
                (
                    secret("app_secret", c.app_secret, c.app_secret_env)?,
                    secret("verify_token", c.verify_token, c.verify_token_env)?,
                    check_id(format!("{path}.account_id"), &c.account_id)?,
                    secret("access_token", c.access_token, c.access_token_env)?,
                    check_base(format!("{path}.api_base"), c.api_base, GRAPH_INSTAGRAM)?,
                )
            }
            Kind::Whatsapp => {
                let c: WhatsappConfig = parse_table(path, table)?;
                (
                    secret("app_secret", c.app_secret, c.app_secret_env)?,
                    secret("verify_token", c.verify_token, c.verify_token_env)?,
                    check_id(format!("{path}.phone_number_id"), &c.phone_number_id)?,
                    secret("access_token", c.access_token, c.access_token_env)?,
                    check_base(format!("{path}.api_base"), c.api_base, GRAPH_FACEBOOK)?,
                )
            }
        };
        Ok(Settings {
            kind,
            connector_id: id.to_string(),
            app_secret,
            verify_token,
            account_id,
            access_token,
            api_base,
        })
    }
}
