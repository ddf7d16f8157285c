use std::sync::Arc;

use chrono::DateTime;
use serde_json::Value;
use switchboard_core::{
    Direction, EventBody, IdentityClaim, NormalizeError, NormalizedEvent, Normalizer, StoredEvent,
};

use crate::config::Settings;

pub struct GenericNormalizer {
    pub(crate) s: Arc<Settings>,
}

/// A scalar as text: strings as they are, numbers and booleans printed; anything else none.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_string())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// RFC 3339 text, or unix seconds as a number or numeric text → unix milliseconds.
pub(crate) fn parse_time(v: &Value) -> Option<i64> {
    let secs_to_ms = |s: f64| -> Option<i64> {
        (s.is_finite() && s.abs() < 1e13).then(|| (s * 1000.0).round() as i64)
    };
    match v {
        Value::Number(n) => n.as_f64().and_then(secs_to_ms),
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|d| d.timestamp_millis())
            .or_else(|| s.trim().parse::<f64>().ok().and_then(secs_to_ms)),
        _ => None,
    }
}

impl GenericNormalizer {
    fn get(&self, json: &Value, ptr: &Option<String>) -> Option<String> {
        ptr.as_deref()
            .and_then(|p| json.pointer(p))
            .and_then(scalar)
    }
}

impl Normalizer for GenericNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let json: Value = serde_json::from_slice(&raw.payload)
            .map_err(|e| NormalizeError(format!("payload is not JSON: {e}")))?;
        let m = &self.s.mapping;
        let occurred_at = m
            .occurred_at
            .as_deref()
            .and_then(|p| json.pointer(p))
            .and_then(parse_time)
            .or(raw.occurred_at)
            .unwrap_or(raw.received_at);

        let email = self.get(&json, &m.customer_email);
        let phone = self.get(&json, &m.customer_phone);
        let external = self.get(&json, &m.customer_external_id);
        let name = self.get(&json, &m.customer_name);
        let mut claims = Vec::new();
        if let Some(v) = &email {
            claims.push(IdentityClaim::email(v));
        }
        if let Some(v) = &phone {
            claims.push(IdentityClaim::phone(v));
        }
        if let Some(v) = &external {
            claims.push(IdentityClaim::external_id(&self.s.connector_id, v));
        }
        if let Some(v) = &name {
            claims.push(IdentityClaim::name(v));
        }
        let direction = match self.get(&json, &m.direction).as_deref() {
            Some("outbound") => Direction::Outbound,
            _ => Direction::Inbound,
        };
        // A message needs a conversation: the mapped thread, else one per customer key, else
        // one per event.
        let thread = self.get(&json, &m.thread).or_else(|| {
            external
                .as_ref()
                .map(|v| format!("customer:{v}"))
                .or_else(|| {
                    email
                        .as_ref()
                        .map(|v| format!("email:{}", v.to_lowercase()))
                })
                .or_else(|| phone.as_ref().map(|v| format!("phone:{v}")))
        });

        let mut out = Vec::new();
        let status = self.get(&json, &m.status).map(|s| s.to_lowercase());
        let message_id = self.get(&json, &m.message_id);
        if let (Some(status), Some(message_id)) = (&status, &message_id) {
            if self.get(&json, &m.text).is_none() {
                out.push(NormalizedEvent {
                    channel: self.s.channel.clone(),
                    direction: Direction::Outbound,
                    thread_key: thread,
                    claims: Vec::new(),
                    occurred_at,
                    body: EventBody::Status {
                        message_id: message_id.clone(),
                        status: status.clone(),
                        reason: None,
                    },
                    thread_refs: Vec::new(),
                });
                return Ok(out);
            }
        }
        if let Some(text) = self.get(&json, &m.text) {
            out.push(NormalizedEvent {
                channel: self.s.channel.clone(),
                direction,
                thread_key: Some(
                    thread.unwrap_or_else(|| format!("event:{}", raw.provider_event_id)),
                ),
                claims: claims.clone(),
                occurred_at,
                body: EventBody::Message {
                    message_id,
                    text,
                    attachments: Vec::new(),
                    reply_to: None,
                },
                thread_refs: Vec::new(),
            });
        }
        if let Some(order_id) = self.get(&json, &m.order_id) {
            out.push(NormalizedEvent {
                channel: self.s.channel.clone(),
                direction: Direction::Inbound,
                thread_key: None,
                claims: claims.clone(),
                occurred_at,
                body: {
                    let currency = self
                        .get(&json, &m.order_currency)
                        .map(|c| c.to_ascii_uppercase());
                    EventBody::Order(switchboard_core::Order {
                        order_id,
                        total_minor: self.get(&json, &m.order_total).and_then(|t| {
                            switchboard_core::money::minor(&t, currency.as_deref().unwrap_or(""))
                        }),
                        currency,
                        status: self.get(&json, &m.order_status),
                        updated_at: m
                            .order_updated_at
                            .as_deref()
                            .and_then(|p| json.pointer(p))
                            .and_then(parse_time),
                        ..Default::default()
                    })
                },
                thread_refs: Vec::new(),
            });
        }
        let address = switchboard_core::Address {
            name: name.clone(),
            line1: self.get(&json, &m.customer_address_line1),
            line2: self.get(&json, &m.customer_address_line2),
            city: self.get(&json, &m.customer_city),
            region: self.get(&json, &m.customer_region),
            postal_code: self.get(&json, &m.customer_postal_code),
            country: self.get(&json, &m.customer_country),
            ..Default::default()
        };
        let birth_date = self.get(&json, &m.customer_birth_date);
        let has_address = address.line1.is_some()
            || address.line2.is_some()
            || address.city.is_some()
            || address.region.is_some()
            || address.postal_code.is_some()
            || address.country.is_some();
        if let Some(external_id) = external
            .clone()
            .filter(|_| has_address || birth_date.is_some())
        {
            out.push(NormalizedEvent {
                channel: self.s.channel.clone(),
                direction: Direction::Inbound,
                thread_key: None,
                claims: claims.clone(),
                occurred_at,
                body: EventBody::Profile(switchboard_core::Profile {
                    external_id,
                    name: name.clone(),
                    email: email.clone(),
                    phone: phone.clone(),
                    address: has_address.then_some(address),
                    birth_date,
                    created_at: None,
                    updated_at: None,
                }),
                thread_refs: Vec::new(),
            });
        }
        if out.is_empty() {
            out.push(NormalizedEvent {
                channel: self.s.channel.clone(),
                direction,
                thread_key: None,
                claims,
                occurred_at,
                body: EventBody::Unsupported {
                    reason: "payload has neither a mapped text nor an order id".into(),
                },
                thread_refs: Vec::new(),
            });
        }
        Ok(out)
    }
}
