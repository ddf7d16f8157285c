//! Calls to the Bot API (`{api_base}/bot<token>/<method>`) and the mapping of its answers to
//! `ConnectorError`. The token sits in the URL path by Telegram's design, so nothing here ever
//! formats the URL or a `reqwest::Error` into an error, and any text taken from a response is
//! scrubbed of the token before it can reach an agent or a log.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_core::http_client::{retry_after, status_error, transport_error};
use switchboard_core::ConnectorError;

use super::config::Settings;

/// Response bodies read at most (a `getUpdates` page of 100 updates fits easily).
const MAX_BODY: usize = 8 * 1024 * 1024;

pub struct Api {
    pub(crate) s: Arc<Settings>,
    pub(crate) client: reqwest::Client,
}

/// `{"ok":…,"result":…,"error_code":…,"description":…,"parameters":{"retry_after":…}}`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    ok: bool,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
    #[serde(default)]
    migrate_to_chat_id: Option<i64>,
}

/// Replaces the bot token (and its secret half) wherever it appears.
pub(crate) fn scrub(text: &str, token: &str) -> String {
    let mut out = text.replace(token, "[redacted]");
    if let Some((_, secret)) = token.split_once(':') {
        if !secret.is_empty() {
            out = out.replace(secret, "[redacted]");
        }
    }
    out
}

impl Api {
    /// POSTs `body` as JSON to `method`; returns the exact bytes of `result` on success.
    pub async fn call(
        &self,
        method: &str,
        body: &serde_json::Value,
    ) -> Result<Vec<u8>, ConnectorError> {
        let url = format!(
            "{}/bot{}/{method}",
            self.s.api_base,
            self.s.bot_token.expose()
        );
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let header_wait = retry_after(resp.headers(), chrono::Utc::now().timestamp());
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
        let bytes = &bytes[..bytes.len().min(MAX_BODY)];
        self.answer(method, status, header_wait, bytes)
    }

    /// Classifies one Bot API answer. Pure, so every error path is testable without a server.
    pub(crate) fn answer(
        &self,
        method: &str,
        status: u16,
        header_wait: Option<Duration>,
        bytes: &[u8],
    ) -> Result<Vec<u8>, ConnectorError> {
        let token = self.s.bot_token.expose();
        let env: Option<Envelope<'_>> = serde_json::from_slice(bytes).ok();
        if (200..300).contains(&status) {
            match &env {
                Some(Envelope {
                    ok: true,
                    result: Some(r),
                    ..
                }) => return Ok(r.get().as_bytes().to_vec()),
                Some(e) if !e.ok && e.error_code.is_some() => {}
                _ => {
                    return Err(ConnectorError::Transient(format!(
                        "{method}: HTTP {status} without an ok result"
                    )))
                }
            }
        }
        let code = env
            .as_ref()
            .and_then(|e| e.error_code)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|_| (200..300).contains(&status))
            .unwrap_or(status);
        let description = env
            .as_ref()
            .and_then(|e| e.description.clone())
            .unwrap_or_else(|| String::from_utf8_lossy(bytes).chars().take(300).collect());
        let description = scrub(description.trim(), token);
        let params = env.as_ref().and_then(|e| e.parameters.as_ref());
        let reason = if description.is_empty() {
            format!("Telegram {method}: HTTP {code}")
        } else {
            format!("Telegram {method}: {description}")
        };
        Err(match code {
            429 => ConnectorError::RateLimited {
                retry_after: params
                    .and_then(|p| p.retry_after)
                    .map(|s| Duration::from_secs(s.min(86_400)))
                    .or(header_wait),
            },
            // A wrong token is 401; a malformed one makes the whole bot URL unknown (404).
            401 | 404 => ConnectorError::Unauthorized(reason),
            // 403 is about one chat ("bot was blocked by the user", "bot was kicked"), never
            // about our credentials: the reply fails, the connector stays healthy.
            403 => ConnectorError::Permanent(reason),
            409 => ConnectorError::Permanent(format!(
                "{reason} (a webhook is set on this bot, so getUpdates is refused: call \
                 deleteWebhook, or use mode = \"webhook\")"
            )),
            400 if params.and_then(|p| p.migrate_to_chat_id).is_some() => {
                ConnectorError::Permanent(format!(
                    "{reason} (the group became a supergroup with a new chat id)"
                ))
            }
            500..=599 => ConnectorError::Transient(reason),
            other => match status_error(other, header_wait, "") {
                ConnectorError::Permanent(_) => ConnectorError::Permanent(reason),
                ConnectorError::Transient(_) => ConnectorError::Transient(reason),
                ConnectorError::Unauthorized(_) => ConnectorError::Unauthorized(reason),
                rl => rl,
            },
        })
    }
}
