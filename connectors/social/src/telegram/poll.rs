//! Poll mode: long polling `getUpdates`. The cursor is the next `offset` (highest update_id
//! seen + 1); calling with it confirms everything before it, so the hub stores the page and
//! the cursor in one transaction before it asks again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use switchboard_core::traits::Cursor;
use switchboard_core::{ConnectorError, PollPage, Poller};

use super::api::Api;
use super::normalize::HANDLED;
use super::webhook::raw_event;

/// Updates per page, Telegram's maximum.
pub const LIMIT: usize = 100;

pub struct TelegramPoller {
    pub(crate) api: Arc<Api>,
}

#[async_trait]
impl Poller for TelegramPoller {
    async fn poll(&self, cursor: Option<Cursor>) -> Result<PollPage, ConnectorError> {
        // A cursor this connector did not write is ignored rather than fatal: Telegram then
        // sends every unconfirmed update again and the hub's dedupe drops the repeats.
        let offset = cursor.as_deref().and_then(|c| c.trim().parse::<i64>().ok());
        let mut body = serde_json::json!({
            "limit": LIMIT,
            "timeout": self.api.s.poll_timeout.as_secs(),
            "allowed_updates": HANDLED,
        });
        if let Some(o) = offset {
            body["offset"] = o.into();
        }
        let result = self.api.call("getUpdates", &body).await?;
        page(&result, offset, &self.api.s.bot_id)
    }

    /// Zero: the long poll itself waits up to `poll_timeout_secs` for updates.
    fn interval(&self) -> Duration {
        Duration::ZERO
    }
}

/// Splits `getUpdates`' `result` array into one raw event per update, each with its exact
/// bytes.
pub(crate) fn page(
    result: &[u8],
    offset: Option<i64>,
    bot_id: &str,
) -> Result<PollPage, ConnectorError> {
    let items: Vec<&RawValue> = serde_json::from_slice(result).map_err(|_| {
        ConnectorError::Transient("getUpdates: result is not an array of updates".into())
    })?;
    let got = items.len();
    let mut events = Vec::with_capacity(got);
    let mut max_id: Option<i64> = None;
    for item in items {
        let json: serde_json::Value = serde_json::from_str(item.get())
            .map_err(|_| ConnectorError::Transient("getUpdates: an update is not JSON".into()))?;
        let payload = bytes::Bytes::copy_from_slice(item.get().as_bytes());
        let ev = raw_event(&json, payload, bot_id).map_err(|_| {
            ConnectorError::Transient("getUpdates: an update has no update_id".into())
        })?;
        if let Ok(id) = ev.provider_event_id.parse::<i64>() {
            max_id = Some(max_id.map_or(id, |m| m.max(id)));
        }
        events.push(ev);
    }
    let next = match (max_id, offset) {
        (Some(m), Some(o)) => Some(m.saturating_add(1).max(o)),
        (Some(m), None) => Some(m.saturating_add(1)),
        (None, o) => o,
    };
    Ok(PollPage {
        events,
        next_cursor: next.map(|n| n.to_string()),
        more: got >= LIMIT,
    })
}
