//! Polling the REST Admin API: `GET {api_base}/orders.json?status=any&updated_at_min=…&
//! limit=250&order=updated_at asc`, then the `Link: <…page_info=…>; rel="next"` pages, which
//! Shopify serves with `limit` and `page_info` only (its rule: no other filter with a
//! `page_info`). The cursor is our own JSON; it moves with each stored page, so a restart
//! mid-walk resumes at the page it stopped at. A finished walk starts the next one at the
//! newest `updated_at` it saw (inclusive: the boundary order comes again and dedupes by its
//! `order:<id>:<updated_at>` event id).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use switchboard_core::http_client::{retry_after, status_error, transport_error};
use switchboard_core::traits::Cursor;
use switchboard_core::{ConnectorError, PollPage, Poller, RawEvent};

use super::config::Settings;
use super::normalize::{event_id, parse_time};

/// Orders per page, Shopify's maximum.
pub const LIMIT: usize = 250;
/// How far back the very first poll looks (no cursor yet): webhooks missed just before the
/// hub started. Older history is `switchboard backfill`'s job.
pub const FIRST_LOOKBACK: Duration = Duration::from_secs(24 * 3600);
/// The raw event kind of a polled order (its body is the same as a webhook's).
pub const POLLED_KIND: &str = "orders/updated";
pub const SOURCE_HEADER: &str = "x-sb-source";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCursor {
    /// RFC 3339 lower bound (inclusive) of the current walk.
    pub updated_at_min: String,
    /// Shopify's cursor of the next page of the current walk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_info: Option<String>,
    /// The newest `updated_at` (unix ms) seen so far in this walk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_updated_ms: Option<i64>,
}

pub struct ShopifyPoller {
    pub(crate) s: Arc<Settings>,
    pub(crate) client: reqwest::Client,
    /// Set when the call-limit bucket was nearly full: no call before this instant.
    pub(crate) hold_until: Mutex<Option<Instant>>,
}

pub(crate) fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `page_info` of the `rel="next"` link, if any. Only the token is taken: the next URL is
/// built from `api_base`, so a link to another host never receives the access token.
pub fn next_page_info(link: &str) -> Option<String> {
    link.split(',').take(10).find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        if !is_next {
            return None;
        }
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        let url = reqwest::Url::parse(url).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == "page_info")
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty())
    })
}

/// `X-Shopify-Shop-Api-Call-Limit: 39/40`: when the leaky bucket is 90 % full, how long to
/// wait until it has drained to 75 % (buckets drain at a twentieth of their size per second).
pub fn call_limit_hold(value: &str) -> Option<Duration> {
    let (used, max) = value.trim().split_once('/')?;
    let (used, max): (u64, u64) = (used.trim().parse().ok()?, max.trim().parse().ok()?);
    if max == 0 || used * 10 < max * 9 {
        return None;
    }
    let target = max - max / 4;
    Some(Duration::from_millis(
        (used.saturating_sub(target) * 20_000 / max).max(500),
    ))
}

/// Retry-After as Shopify sends it (`2.0`), or as whole seconds / an HTTP date.
fn shopify_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    retry_after(headers, now_ms() / 1000).or_else(|| {
        let v: f64 = headers
            .get("retry-after")?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v.min(86_400.0)))
    })
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    orders: Vec<&'a RawValue>,
}

impl ShopifyPoller {
    fn check_hold(&self) -> Result<(), ConnectorError> {
        let mut h = self
            .hold_until
            .lock()
            .map_err(|_| ConnectorError::Transient("poller state poisoned".into()))?;
        match *h {
            Some(until) if until > Instant::now() => Err(ConnectorError::RateLimited {
                retry_after: Some(until - Instant::now()),
            }),
            _ => {
                *h = None;
                Ok(())
            }
        }
    }

    fn set_hold(&self, d: Duration) {
        if let Ok(mut h) = self.hold_until.lock() {
            *h = Some(Instant::now() + d);
        }
    }
}

/// One polled order as a raw event: the exact bytes of its array element, keyed like the
/// webhook of the same version.
fn raw_event(item: &RawValue) -> RawEvent {
    let bytes = item.get().as_bytes();
    let json: serde_json::Value = serde_json::from_str(item.get()).unwrap_or_default();
    let id = event_id(POLLED_KIND, &json)
        .unwrap_or_else(|| format!("order:?:{}", hex::encode(Sha256::digest(bytes))));
    RawEvent {
        provider_event_id: id,
        kind: POLLED_KIND.into(),
        occurred_at: json
            .get("updated_at")
            .and_then(|t| t.as_str())
            .and_then(parse_time),
        payload: Bytes::copy_from_slice(bytes),
        headers: vec![(SOURCE_HEADER.into(), "poll".into())],
    }
}

#[async_trait]
impl Poller for ShopifyPoller {
    async fn poll(&self, cursor: Option<Cursor>) -> Result<PollPage, ConnectorError> {
        self.check_hold()?;
        // A cursor we cannot read starts a walk over the last day rather than stopping the
        // poller for good; repeats dedupe by event id.
        let cur: PollCursor = cursor
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_else(|| PollCursor {
                updated_at_min: iso(now_ms() - FIRST_LOOKBACK.as_millis() as i64),
                ..Default::default()
            });
        let url = format!("{}/orders.json", self.s.api_base);
        let limit = LIMIT.to_string();
        let query: Vec<(&str, &str)> = match &cur.page_info {
            Some(p) => vec![("limit", &limit), ("page_info", p)],
            None => vec![
                ("status", "any"),
                ("updated_at_min", &cur.updated_at_min),
                ("limit", &limit),
                ("order", "updated_at asc"),
            ],
        };
        let resp = self
            .client
            .get(&url)
            .query(&query)
            .header("x-shopify-access-token", self.s.access_token.expose())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if let Some(d) = headers
            .get("x-shopify-shop-api-call-limit")
            .and_then(|v| v.to_str().ok())
            .and_then(call_limit_hold)
        {
            self.set_hold(d);
        }
        let body = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if !(200..300).contains(&status) {
            let ra = shopify_retry_after(&headers);
            return Err(status_error(status, ra, &String::from_utf8_lossy(&body)));
        }
        let page: Page<'_> = serde_json::from_slice(&body).map_err(|e| {
            ConnectorError::Transient(format!("orders.json answered unreadable JSON: {e}"))
        })?;
        let events: Vec<RawEvent> = page.orders.iter().map(|o| raw_event(o)).collect();
        let max_updated_ms = events
            .iter()
            .filter_map(|e| e.occurred_at)
            .chain(cur.max_updated_ms)
            .max();
        let next = headers
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_page_info);
        let (next_cursor, more) = match next {
            Some(p) if !events.is_empty() => (
                PollCursor {
                    updated_at_min: cur.updated_at_min.clone(),
                    page_info: Some(p),
                    max_updated_ms,
                },
                true,
            ),
            _ => (
                PollCursor {
                    updated_at_min: max_updated_ms.map(iso).unwrap_or(cur.updated_at_min),
                    page_info: None,
                    max_updated_ms: None,
                },
                false,
            ),
        };
        Ok(PollPage {
            events,
            next_cursor: Some(serde_json::to_string(&next_cursor).unwrap_or_default()),
            more,
        })
    }

    fn interval(&self) -> Duration {
        self.s.poll_interval
    }

    fn backfill_cursor(&self, since_ms: i64) -> Option<Cursor> {
        serde_json::to_string(&PollCursor {
            updated_at_min: iso(since_ms),
            ..Default::default()
        })
        .ok()
    }
}
