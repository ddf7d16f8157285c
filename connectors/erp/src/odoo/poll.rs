//! Polling: one `search_read` page per call, walking every model by `(write_date, id)`. The
//! cursor (JSON) holds each model's position and the model to ask next:
//! `{"next":1,"at":{"res.partner":{"write_date":"2026-01-05 10:00:00","id":42}}}`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use switchboard_core::traits::Cursor;
use switchboard_core::{ConnectorError, PollPage, Poller, RawEvent};

use super::api::{Api, LIMIT};
use crate::common::{cursor_from, datetime_ms, format_datetime, poll_round, StreamPage, Streams};

/// How far a model has been read: the last record returned, by `(write_date, id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub write_date: String,
    pub id: i64,
}

pub struct OdooPoller {
    pub(crate) api: Arc<Api>,
}

/// The fields read per model: what the normaliser maps, and nothing a server before 19 lacks.
pub fn fields(model: &str) -> &'static [&'static str] {
    match model {
        "res.partner" => &[
            "id",
            "name",
            "email",
            "phone",
            "mobile",
            "street",
            "street2",
            "city",
            "zip",
            "state_id",
            "country_id",
            "is_company",
            "create_date",
            "write_date",
        ],
        "sale.order" => &[
            "id",
            "name",
            "state",
            "amount_total",
            "currency_id",
            "partner_id",
            "date_order",
            "create_date",
            "write_date",
        ],
        "account.move" => &[
            "id",
            "name",
            "move_type",
            "state",
            "payment_state",
            "amount_total",
            "amount_residual",
            "currency_id",
            "partner_id",
            "invoice_date",
            "invoice_date_due",
            "invoice_origin",
            "create_date",
            "write_date",
        ],
        _ => &["id", "write_date"],
    }
}

/// The search domain for `model` after `after`: `['|', ('write_date','>',c), '&',
/// ('write_date','=',c), ('id','>',last_id)]`, plus, for journal entries, customer invoices and
/// credit notes only.
pub fn domain(model: &str, after: Option<&Position>) -> Value {
    let mut d: Vec<Value> = Vec::new();
    if model == "account.move" {
        d.push(json!(["move_type", "in", ["out_invoice", "out_refund"]]));
    }
    if let Some(p) = after {
        d.push(json!("|"));
        d.push(json!(["write_date", ">", p.write_date]));
        d.push(json!("&"));
        d.push(json!(["write_date", "=", p.write_date]));
        d.push(json!(["id", ">", p.id]));
    }
    Value::Array(d)
}

/// Turns one page of records into raw events, one per record with its exact bytes.
pub fn events(
    model: &str,
    items: &[&serde_json::value::RawValue],
) -> (Vec<RawEvent>, Option<Position>) {
    let mut events = Vec::with_capacity(items.len());
    let mut last = None;
    for item in items {
        let Ok(v) = serde_json::from_str::<Value>(item.get()) else {
            continue;
        };
        let Some(id) = v.get("id").and_then(Value::as_i64) else {
            // No id, no identity: nothing could ever refer to it.
            continue;
        };
        let write_date = v
            .get("write_date")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !write_date.is_empty() {
            last = Some(Position {
                write_date: write_date.clone(),
                id,
            });
        }
        events.push(RawEvent {
            provider_event_id: format!("{model}:{id}:{write_date}"),
            kind: model.to_string(),
            occurred_at: datetime_ms(&write_date),
            payload: bytes::Bytes::copy_from_slice(item.get().as_bytes()),
            headers: Vec::new(),
        });
    }
    (events, last)
}

#[async_trait]
impl Streams for OdooPoller {
    type Pos = Position;

    fn streams(&self) -> &[String] {
        &self.api.s.models
    }

    async fn page(
        &self,
        model: &str,
        after: Option<&Position>,
    ) -> Result<StreamPage<Position>, ConnectorError> {
        let records = self
            .api
            .search_read(model, domain(model, after), fields(model))
            .await?;
        let items = records.items()?;
        let full = items.len() >= LIMIT;
        let (events, last) = events(model, &items);
        Ok(StreamPage { events, last, full })
    }
}

#[async_trait]
impl Poller for OdooPoller {
    async fn poll(&self, cursor: Option<Cursor>) -> Result<PollPage, ConnectorError> {
        poll_round(self, cursor.as_deref()).await
    }

    fn interval(&self) -> Duration {
        self.api.s.interval
    }

    /// Every model from `since` (records written at or after it).
    fn backfill_cursor(&self, since_ms: i64) -> Option<Cursor> {
        Some(cursor_from(
            &self.api.s.models,
            Position {
                write_date: format_datetime(since_ms),
                id: 0,
            },
        ))
    }
}
