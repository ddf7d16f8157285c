//! Polling the REST API: `GET {api_base}/orders?modified_after=…&dates_are_gmt=true&
//! per_page=100&page=N&orderby=modified&order=asc` with Basic auth, walking pages until
//! `X-WP-TotalPages`. The cursor is our own JSON and moves with each stored page; a finished
//! walk starts the next one a second before the newest `date_modified_gmt` it saw
//! (`modified_after` is strict, and times have whole seconds), so the boundary order comes
//! again and dedupes by its `order:<id>:<modified>` event id.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use switchboard_core::http_client::{retry_after, status_error, transport_error};
use switchboard_core::traits::Cursor;
use switchboard_core::{ConnectorError, PollPage, Poller, RawEvent};

use super::config::Settings;
use super::normalize::{event_id, parse_gmt};
use crate::shopify::poll::{iso, FIRST_LOOKBACK, SOURCE_HEADER};

/// Orders per page, the REST API's maximum.
pub const PER_PAGE: usize = 100;
/// The raw event kind of a polled order (its body is the same as a webhook's).
pub const POLLED_KIND: &str = "order.updated";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCursor {
    /// RFC 3339 (UTC) strict lower bound of the current walk.
    pub modified_after: String,
    /// The next page of the current walk (1-based).
    pub page: u32,
    /// The newest `date_modified_gmt` (unix ms) seen so far in this walk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_modified_ms: Option<i64>,
}

pub struct WooPoller {
    pub(crate) s: Arc<Settings>,
    pub(crate) client: reqwest::Client,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn raw_event(item: &RawValue) -> RawEvent {
    let bytes = item.get().as_bytes();
    let json: serde_json::Value = serde_json::from_str(item.get()).unwrap_or_default();
    let id = event_id(POLLED_KIND, &json, None)
        .unwrap_or_else(|| format!("order:?:{}", hex::encode(Sha256::digest(bytes))));
    RawEvent {
        provider_event_id: id,
        kind: POLLED_KIND.into(),
        occurred_at: json
            .get("date_modified_gmt")
            .and_then(|t| t.as_str())
            .and_then(parse_gmt),
        payload: Bytes::copy_from_slice(bytes),
        headers: vec![(SOURCE_HEADER.into(), "poll".into())],
    }
}

#[async_trait]
impl Poller for WooPoller {
    async fn poll(&self, cursor: Option<Cursor>) -> Result<PollPage, ConnectorError> {
        let cur: PollCursor = cursor
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_else(|| PollCursor {
                modified_after: iso(now_ms() - FIRST_LOOKBACK.as_millis() as i64),
                page: 1,
                max_modified_ms: None,
            });
        let page = cur.page.max(1);
        let resp = self
            .client
            .get(format!("{}/orders", self.s.api_base))
            .query(&[
                ("modified_after", cur.modified_after.as_str()),
                ("dates_are_gmt", "true"),
                ("per_page", &PER_PAGE.to_string()),
                ("page", &page.to_string()),
                ("orderby", "modified"),
                ("order", "asc"),
            ])
            .basic_auth(
                self.s.consumer_key.expose(),
                Some(self.s.consumer_secret.expose()),
            )
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if !(200..300).contains(&status) {
            let ra = retry_after(&headers, now_ms() / 1000);
            return Err(status_error(status, ra, &String::from_utf8_lossy(&body)));
        }
        let items: Vec<&RawValue> = serde_json::from_slice(&body).map_err(|e| {
            ConnectorError::Transient(format!("orders answered unreadable JSON: {e}"))
        })?;
        let events: Vec<RawEvent> = items.iter().map(|o| raw_event(o)).collect();
        let max_modified_ms = events
            .iter()
            .filter_map(|e| e.occurred_at)
            .chain(cur.max_modified_ms)
            .max();
        let total_pages: u32 = headers
            .get("x-wp-totalpages")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let more = !events.is_empty() && page < total_pages;
        let next = if more {
            PollCursor {
                modified_after: cur.modified_after.clone(),
                page: page + 1,
                max_modified_ms,
            }
        } else {
            PollCursor {
                modified_after: max_modified_ms
                    .map(|m| iso(m - 1000))
                    .unwrap_or(cur.modified_after),
                page: 1,
                max_modified_ms: None,
            }
        };
        Ok(PollPage {
            events,
            next_cursor: Some(serde_json::to_string(&next).unwrap_or_default()),
            more,
        })
    }

    fn interval(&self) -> Duration {
        self.s.poll_interval
    }

    fn backfill_cursor(&self, since_ms: i64) -> Option<Cursor> {
        serde_json::to_string(&PollCursor {
            modified_after: iso(since_ms),
            page: 1,
            max_modified_ms: None,
        })
        .ok()
    }
}
