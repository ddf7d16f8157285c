//! Polling `GET /v1/events`, which Stripe lists newest first (events are kept 30 days).
//!
//! The cursor is this connector's JSON, stored by the hub with each page in one transaction:
//!
//! - live `{"walk":"live","newest":"evt_…"}`: every event up to and including `newest` is
//!   stored. The next call asks `ending_before=newest`, which returns the page of events
//!   *just newer* than it (still newest first, `has_more` when even newer ones remain); the
//!   page's first item becomes `newest`. Pages are cut at ids, not times, so nothing is skipped
//!   or repeated, and a restart resumes from the stored cursor. Without a cursor the first
//!   poll takes the latest page (up to 100 events) and starts from its newest; older history
//!   is the backfill's job.
//! - backfill `{"walk":"backfill","since":<unix s>,"after":"evt_…"}`: walks back from the
//!   newest event to `created[gte]=since` with `starting_after=after` (the oldest stored so
//!   far); `more` until Stripe has no more. Events newer than the backfill's first page are
//!   the live poller's (or the webhooks').
//!
//! Each page is stored oldest first. The same event by webhook and by poll has the same id
//! (`evt_…`), so the hub stores it once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use switchboard_core::http_client::{retry_after, status_error, transport_error};
use switchboard_core::traits::Cursor;
use switchboard_core::{ConnectorError, PollPage, Poller, Secret};

use super::config::Settings;
use super::webhook::raw_event;

/// Events per page, Stripe's maximum.
pub const LIMIT: usize = 100;
/// Stripe sends no Retry-After with a 429; its docs advise backing off a little.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "walk", rename_all = "snake_case")]
pub enum PollCursor {
    Live {
        newest: String,
    },
    Backfill {
        since: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
}

impl PollCursor {
    pub fn encode(&self) -> Cursor {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub struct StripePoller {
    pub(crate) s: Arc<Settings>,
    pub(crate) api_key: Secret,
    pub(crate) client: reqwest::Client,
}

#[derive(Deserialize)]
struct List<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
    #[serde(default)]
    has_more: bool,
}

#[async_trait]
impl Poller for StripePoller {
    async fn poll(&self, cursor: Option<Cursor>) -> Result<PollPage, ConnectorError> {
        // A cursor this connector did not write starts a fresh live walk; repeats dedupe.
        let cursor = cursor
            .as_deref()
            .and_then(|c| serde_json::from_str::<PollCursor>(c).ok());
        let limit = LIMIT.to_string();
        let mut query: Vec<(&str, String)> = vec![("limit", limit)];
        match &cursor {
            None => {}
            Some(PollCursor::Live { newest }) => query.push(("ending_before", newest.clone())),
            Some(PollCursor::Backfill { since, after }) => {
                query.push(("created[gte]", since.to_string()));
                if let Some(a) = after {
                    query.push(("starting_after", a.clone()));
                }
            }
        }
        let body = self.get_events(&query).await?;
        let list: List<'_> = serde_json::from_slice(&body).map_err(|_| {
            ConnectorError::Transient("/v1/events: the answer is not a list of events".into())
        })?;
        let mut events = Vec::with_capacity(list.data.len());
        for item in list.data.iter().rev() {
            let json: serde_json::Value = serde_json::from_str(item.get()).map_err(|_| {
                ConnectorError::Transient("/v1/events: an event is not JSON".into())
            })?;
            let payload = Bytes::copy_from_slice(item.get().as_bytes());
            let ev = raw_event(&json, payload, Vec::new()).map_err(|_| {
                ConnectorError::Transient("/v1/events: an event has no id or type".into())
            })?;
            events.push(ev);
        }
        // `events` is oldest first: its last is the newest, its first the oldest.
        let (next, more) = match cursor {
            None => (
                events.last().map(|e| PollCursor::Live {
                    newest: e.provider_event_id.clone(),
                }),
                false,
            ),
            Some(PollCursor::Live { newest }) => (
                Some(PollCursor::Live {
                    newest: events
                        .last()
                        .map(|e| e.provider_event_id.clone())
                        .unwrap_or(newest),
                }),
                list.has_more && !events.is_empty(),
            ),
            Some(PollCursor::Backfill { since, after }) => (
                Some(PollCursor::Backfill {
                    since,
                    after: events
                        .first()
                        .map(|e| e.provider_event_id.clone())
                        .or(after),
                }),
                list.has_more && !events.is_empty(),
            ),
        };
        Ok(PollPage {
            events,
            next_cursor: next.map(|c| c.encode()),
            more,
        })
    }

    fn interval(&self) -> Duration {
        self.s.poll_interval
    }

    fn backfill_cursor(&self, since_ms: i64) -> Option<Cursor> {
        Some(
            PollCursor::Backfill {
                since: since_ms.div_euclid(1000),
                after: None,
            }
            .encode(),
        )
    }
}

impl StripePoller {
    async fn get_events(&self, query: &[(&str, String)]) -> Result<Bytes, ConnectorError> {
        let resp = self
            .client
            .get(format!("{}/v1/events", self.s.api_base))
            .bearer_auth(self.api_key.expose())
            .query(query)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        if status == 429 {
            let now = chrono::Utc::now().timestamp();
            return Err(ConnectorError::RateLimited {
                retry_after: Some(retry_after(&headers, now).unwrap_or(DEFAULT_RETRY_AFTER)),
            });
        }
        Err(status_error(status, None, &self.reason(&body)))
    }

    /// Stripe's `error.message` (else the body), never with our key in it.
    fn reason(&self, body: &[u8]) -> String {
        let text = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        let key = self.api_key.expose();
        if key.is_empty() {
            text
        } else {
            text.replace(key, "[redacted]")
        }
    }
}
