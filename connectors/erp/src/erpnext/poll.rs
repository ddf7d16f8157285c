//! Polling `GET /api/resource/<DocType>` by `(modified, name)`, one page per call, every
//! doctype in turn. The cursor (JSON) holds each doctype's position and the doctype to ask
//! next: `{"next":0,"at":{"Customer":{"modified":"2026-01-05 10:00:00.000000","name":"CUST-0001"}}}`.
//! A document whose child tables the normaliser reads (order items, payment references) is
//! fetched whole, since a list row carries only the parent's fields.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use switchboard_core::http_client::{retry_after, status_error, transport_error};
use switchboard_core::traits::Cursor;
use switchboard_core::{ConnectorError, PollPage, Poller};

use super::config::Settings;
use super::webhook::raw_event;
use crate::common::{cursor_from, format_datetime, path_segment, poll_round, StreamPage, Streams};

/// Rows per page.
pub const PAGE: usize = 100;

/// Doctypes whose child tables the normaliser maps.
const WHOLE: &[&str] = &["Sales Order", "Payment Entry"];

/// How far a doctype has been read: the last document returned, by `(modified, name)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub modified: String,
    pub name: String,
}

pub struct ErpNextPoller {
    pub(crate) s: Arc<Settings>,
    pub(crate) client: reqwest::Client,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The list query after `after`: `modified >= c AND (modified > c OR name > last)`, i.e.
/// strictly after the last row in `(modified, name)` order.
pub fn list_query(after: Option<&Position>) -> Vec<(&'static str, String)> {
    let mut q = vec![("fields", json!(["*"]).to_string())];
    if let Some(p) = after {
        q.push((
            "filters",
            json!([["modified", ">=", p.modified]]).to_string(),
        ));
        q.push((
            "or_filters",
            json!([["modified", ">", p.modified], ["name", ">", p.name]]).to_string(),
        ));
    }
    q.push(("order_by", "modified asc, name asc".into()));
    q.push(("limit_start", "0".into()));
    q.push(("limit_page_length", PAGE.to_string()));
    q
}

/// Frappe's error body names the exception (`exc_type`); its `exc` traceback stays out.
fn reason(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(t) = v.get("exc_type").and_then(Value::as_str) {
            let msg = v.get("exception").and_then(Value::as_str).unwrap_or("");
            let msg: String = msg.chars().take(200).collect();
            return if msg.is_empty() {
                t.to_string()
            } else {
                format!("{t}: {msg}")
            };
        }
    }
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

impl ErpNextPoller {
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<bytes::Bytes, ConnectorError> {
        let resp = self
            .client
            .get(format!("{}{path}", self.s.api_base))
            .query(query)
            .header(
                "authorization",
                format!(
                    "token {}:{}",
                    self.s.api_key.expose(),
                    self.s.api_secret.expose()
                ),
            )
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let after = retry_after(resp.headers(), chrono::Utc::now().timestamp());
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, after, &reason(&bytes)));
        }
        Ok(bytes)
    }
}

#[async_trait]
impl Streams for ErpNextPoller {
    type Pos = Position;

    fn streams(&self) -> &[String] {
        &self.s.doctypes
    }

    async fn page(
        &self,
        doctype: &str,
        after: Option<&Position>,
    ) -> Result<StreamPage<Position>, ConnectorError> {
        let list_path = format!("/api/resource/{}", path_segment(doctype));
        let body = self.get(&list_path, &list_query(after)).await?;
        let list: Data<'_> = serde_json::from_slice(&body).map_err(|_| {
            ConnectorError::Transient(format!("{doctype} list: the answer has no data"))
        })?;
        let rows: Vec<&RawValue> = serde_json::from_str(list.data.get()).map_err(|_| {
            ConnectorError::Transient(format!("{doctype} list: data is not an array"))
        })?;
        let full = rows.len() >= PAGE;
        let mut events = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in rows {
            let Ok(mut v) = serde_json::from_str::<Value>(row.get()) else {
                continue;
            };
            let (Some(name), Some(modified)) = (
                v.get("name").and_then(Value::as_str).map(str::to_string),
                v.get("modified")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ) else {
                continue;
            };
            last = Some(Position {
                modified: modified.clone(),
                name: name.clone(),
            });
            // List rows omit `doctype`; the event id needs it, as the webhook's does.
            let mut payload = bytes::Bytes::copy_from_slice(row.get().as_bytes());
            if WHOLE.contains(&doctype) {
                let doc_path = format!("{list_path}/{}", path_segment(&name));
                match self.get(&doc_path, &[]).await {
                    Ok(b) => {
                        let doc: Data<'_> = serde_json::from_slice(&b).map_err(|_| {
                            ConnectorError::Transient(format!("{doctype} document: no data"))
                        })?;
                        if let Ok(full_doc) = serde_json::from_str::<Value>(doc.data.get()) {
                            v = full_doc;
                            payload = bytes::Bytes::copy_from_slice(doc.data.get().as_bytes());
                        }
                    }
                    // Deleted since it was listed: the list row is all there is.
                    Err(ConnectorError::Permanent(r)) if r.starts_with("HTTP 404") => {}
                    Err(e) => return Err(e),
                }
            }
            if v.get("doctype").is_none() {
                if let Some(o) = v.as_object_mut() {
                    o.insert("doctype".into(), Value::String(doctype.to_string()));
                }
            }
            if let Ok(ev) = raw_event(&v, payload) {
                events.push(ev);
            }
        }
        Ok(StreamPage { events, last, full })
    }
}

#[async_trait]
impl Poller for ErpNextPoller {
    async fn poll(&self, cursor: Option<Cursor>) -> Result<PollPage, ConnectorError> {
        poll_round(self, cursor.as_deref()).await
    }

    fn interval(&self) -> Duration {
        self.s.interval
    }

    /// Every doctype from `since` (documents modified at or after it).
    fn backfill_cursor(&self, since_ms: i64) -> Option<Cursor> {
        Some(cursor_from(
            &self.s.doctypes,
            Position {
                modified: format_datetime(since_ms),
                name: String::new(),
            },
        ))
    }
}
