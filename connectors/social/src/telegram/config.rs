//! `kind = "telegram"`: the config table, validated without I/O.

use std::time::Duration;

use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_optional_secret, resolve_secret};
use switchboard_core::{ConfigError, ConfigResult, Env, Secret};

pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";

/// How updates arrive. Telegram allows one at a time: `getUpdates` answers 409 while a webhook
/// is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Telegram POSTs each update to `/webhooks/{id}` (`setWebhook` with `secret_token`).
    #[default]
    Webhook,
    /// The hub long-polls `getUpdates`; the webhook endpoint answers 404.
    Poll,
}

/// `[[connectors]]` table of `kind = "telegram"`, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    pub id: String,
    pub kind: String,
    /// `123456789:AA…` from @BotFather; needed to send (and to poll).
    pub bot_token: Option<Secret>,
    pub bot_token_env: Option<String>,
    /// The `secret_token` given to `setWebhook`; Telegram echoes it in
    /// `X-Telegram-Bot-Api-Secret-Token`. Required in webhook mode.
    pub secret_token: Option<Secret>,
    pub secret_token_env: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Long-poll timeout of `getUpdates`, seconds (poll mode).
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout_secs: u64,
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.into()
}
fn default_poll_timeout() -> u64 {
    25
}

/// The validated settings the running connector uses. `Debug` never shows a secret.
#[derive(Debug)]
pub struct Settings {
    pub bot_token: Secret,
    /// The numeric part of the token before `:`; scopes user ids (`telegram:<bot_id>`).
    /// Not secret: it is the bot's public user id.
    pub bot_id: String,
    pub secret_token: Option<Secret>,
    pub mode: Mode,
    /// Without a trailing `/`.
    pub api_base: String,
    pub poll_timeout: Duration,
}

/// `123456789:AAE…`: digits, a colon, then the secret part (letters, digits, `_`, `-`).
/// Returns the bot id. The error never repeats the value.
fn bot_id_of(token: &str) -> Option<String> {
    let (id, rest) = token.split_once(':')?;
    let id_ok = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
    let rest_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (id_ok && rest_ok).then(|| id.to_string())
}

/// Telegram: "1-256 characters. Only characters A-Z, a-z, 0-9, _ and - are allowed."
fn secret_token_ok(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Settings {
    /// `path` names the table in errors (`connectors[0]`); the id is checked by the hub.
    pub fn from_table(path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Self> {
        let c: TelegramConfig = parse_table(path, table)?;
        let bot_token = resolve_secret(
            path,
            "bot_token",
            c.bot_token,
            c.bot_token_env.as_deref(),
            env,
        )?;
        let token_key = if c.bot_token_env.is_some() {
            "bot_token_env"
        } else {
            "bot_token"
        };
        let bot_id = bot_id_of(bot_token.expose()).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.{token_key}"),
                "is not a bot token: expected `<bot id>:<secret>` as @BotFather gives it",
            )
        })?;
        let secret_token = resolve_optional_secret(
            path,
            "secret_token",
            c.secret_token,
            c.secret_token_env.as_deref(),
            env,
        )?;
        match (&secret_token, c.mode) {
            (None, Mode::Webhook) => {
                return Err(ConfigError::new(
                    format!("{path}.secret_token"),
                    "missing (set `secret_token` or `secret_token_env`; required when mode = \"webhook\")",
                ))
            }
            (Some(s), _) if !secret_token_ok(s.expose()) => {
                let key = if c.secret_token_env.is_some() {
                    "secret_token_env"
                } else {
                    "secret_token"
                };
                return Err(ConfigError::new(
                    format!("{path}.{key}"),
                    "must be 1-256 characters of A-Z, a-z, 0-9, _ and -",
                ));
            }
            _ => {}
        }
        let api_base = c.api_base.trim().trim_end_matches('/').to_string();
        let base_ok = (api_base.starts_with("http://") || api_base.starts_with("https://"))
            && api_base
                .parse::<http::Uri>()
                .is_ok_and(|u| u.host().is_some());
        if !base_ok {
            return Err(ConfigError::new(
                format!("{path}.api_base"),
                format!("`{}` is not an http(s) URL", c.api_base),
            ));
        }
        if !(1..=50).contains(&c.poll_timeout_secs) {
            return Err(ConfigError::new(
                format!("{path}.poll_timeout_secs"),
                "must be between 1 and 50",
            ));
        }
        Ok(Settings {
            bot_token,
            bot_id,
            secret_token,
            mode: c.mode,
            api_base,
            poll_timeout: Duration::from_secs(c.poll_timeout_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_id_is_the_digits_before_the_colon() {
        assert_eq!(bot_id_of("123456:ABC-def_9").as_deref(), Some("123456"));
        assert_eq!(bot_id_of("123456"), None);
        assert_eq!(bot_id_of(":abc"), None);
        assert_eq!(bot_id_of("12a:abc"), None);
        assert_eq!(bot_id_of("12:"), None);
        assert_eq!(bot_id_of("12:a/b"), None);
    }

    #[test]
    fn secret_token_charset_and_length() {
        assert!(secret_token_ok("Abc_09-z"));
        assert!(secret_token_ok(&"a".repeat(256)));
        assert!(!secret_token_ok(&"a".repeat(257)));
        assert!(!secret_token_ok(""));
        assert!(!secret_token_ok("has space"));
        assert!(!secret_token_ok("dot.ted"));
    }
}
