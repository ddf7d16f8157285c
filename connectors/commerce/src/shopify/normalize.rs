//! Shopify REST resources (webhook bodies and polled pages have the same shape) to business
//! documents: orders, refunds (as payments) and customers (as profiles). Pure.

use serde_json::Value;
use switchboard_core::money::minor_json;
use switchboard_core::{
    Address, Direction, EventBody, IdentityClaim, LineItem, NormalizeError, NormalizedEvent,
    Normalizer, Order, Payment, Profile, StoredEvent,
};

pub const CHANNEL: &str = "shopify";

/// Topics whose body is a whole order.
pub const ORDER_TOPICS: [&str; 6] = [
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "orders/paid",
    "orders/fulfilled",
    "orders/partially_fulfilled",
];
pub const CUSTOMER_TOPICS: [&str; 2] = ["customers/create", "customers/update"];
pub const REFUND_TOPIC: &str = "refunds/create";

/// RFC 3339 (`2026-11-01T10:00:00-05:00`) to unix ms.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// An id as text, whether Shopify sent it as a number or a string.
pub(crate) fn id_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn time(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_str).and_then(parse_time)
}

/// The provider event id of a document version (`order:<id>:<updated_at ms>`), the same
/// whether it arrives by webhook or by poll; `None` when the body is not a known document.
pub fn event_id(topic: &str, json: &Value) -> Option<String> {
    let id = id_of(json.get("id"))?;
    if ORDER_TOPICS.contains(&topic) {
        Some(format!("order:{id}:{}", time(json, "updated_at")?))
    } else if CUSTOMER_TOPICS.contains(&topic) {
        Some(format!("customer:{id}:{}", time(json, "updated_at")?))
    } else if topic == REFUND_TOPIC {
        // A refund never changes once created.
        Some(format!("refund:{id}"))
    } else {
        None
    }
}

pub struct ShopifyNormalizer;

fn address(v: Option<&Value>) -> Option<Address> {
    let v = v.filter(|v| v.is_object())?;
    let name = text(v.get("name")).or_else(|| {
        let n = [text(v.get("first_name")), text(v.get("last_name"))]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        (!n.is_empty()).then_some(n)
    });
    Some(Address {
        name,
        company: text(v.get("company")),
        line1: text(v.get("address1")),
        line2: text(v.get("address2")),
        city: text(v.get("city")),
        region: text(v.get("province_code")).or_else(|| text(v.get("province"))),
        postal_code: text(v.get("zip")),
        country: text(v.get("country_code")).or_else(|| text(v.get("country"))),
        phone: text(v.get("phone")),
    })
}

fn full_name(v: &Value) -> Option<String> {
    let n = [text(v.get("first_name")), text(v.get("last_name"))]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    (!n.is_empty()).then_some(n)
}

/// Email (lower-cased), phone, name and the shop's customer id, most specific first.
fn claims(
    connector_id: &str,
    customer_id: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    name: Option<String>,
) -> Vec<IdentityClaim> {
    let mut c = Vec::new();
    if let Some(id) = customer_id {
        c.push(IdentityClaim::external_id(connector_id, id));
    }
    if let Some(e) = email {
        c.push(IdentityClaim::email(e.to_lowercase()));
    }
    if let Some(p) = phone {
        c.push(IdentityClaim::phone(p));
    }
    if let Some(n) = name {
        c.push(IdentityClaim::name(n));
    }
    c
}

/// Money refunded by a refund: its successful `refund` transactions.
fn refund_total(refund: &Value, currency: &str) -> Option<i64> {
    let txs = refund.get("transactions")?.as_array()?;
    let mut sum = 0i64;
    for t in txs.iter().take(1000) {
        let kind_ok = t.get("kind").and_then(Value::as_str).unwrap_or("refund") == "refund";
        let status_ok = t.get("status").and_then(Value::as_str).unwrap_or("success") == "success";
        if kind_ok && status_ok {
            let cur = t
                .get("currency")
                .and_then(Value::as_str)
                .unwrap_or(currency);
            sum = sum.checked_add(minor_json(t.get("amount")?, cur)?)?;
        }
    }
    Some(sum)
}

fn order(raw: &StoredEvent, o: &Value) -> Result<NormalizedEvent, String> {
    let order_id = id_of(o.get("id")).ok_or("order without `id`")?;
    let currency = text(o.get("currency")).ok_or("order without `currency`")?;
    let total_minor = match o.get("total_price") {
        Some(v) => Some(
            minor_json(v, &currency)
                .ok_or_else(|| format!("order {order_id}: total_price is not an amount"))?,
        ),
        None => None,
    };
    let status = if !o.get("cancelled_at").is_none_or(Value::is_null) {
        "cancelled"
    } else if !o.get("closed_at").is_none_or(Value::is_null) {
        "closed"
    } else {
        "open"
    };
    let refunded_minor = o
        .get("refunds")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .take(1000)
                .filter_map(|r| refund_total(r, &currency))
                .fold(0i64, i64::saturating_add)
        })
        .unwrap_or(0);
    let items = o
        .get("line_items")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .take(10_000)
                .map(|l| LineItem {
                    sku: text(l.get("sku")),
                    name: text(l.get("title"))
                        .or_else(|| text(l.get("name")))
                        .unwrap_or_default(),
                    quantity: l.get("quantity").and_then(Value::as_i64).unwrap_or(0),
                    unit_price_minor: l.get("price").and_then(|p| minor_json(p, &currency)),
                })
                .collect()
        })
        .unwrap_or_default();
    let customer = o.get("customer").filter(|c| c.is_object());
    let email = text(o.get("email")).or_else(|| customer.and_then(|c| text(c.get("email"))));
    let phone = text(o.get("phone")).or_else(|| customer.and_then(|c| text(c.get("phone"))));
    let name = customer
        .and_then(full_name)
        .or_else(|| o.get("billing_address").and_then(full_name));
    let updated_at = time(o, "updated_at");
    let created_at = time(o, "created_at");
    Ok(NormalizedEvent {
        thread_refs: Vec::new(),
        channel: CHANNEL.into(),
        direction: Direction::Inbound,
        thread_key: None,
        claims: claims(
            &raw.connector_id,
            customer.and_then(|c| id_of(c.get("id"))),
            email,
            phone,
            name,
        ),
        occurred_at: updated_at
            .or(created_at)
            .or(raw.occurred_at)
            .unwrap_or(raw.received_at),
        body: EventBody::Order(Order {
            number: text(o.get("name")).or_else(|| id_of(o.get("order_number"))),
            status: Some(status.into()),
            financial_status: text(o.get("financial_status")),
            fulfillment_status: text(o.get("fulfillment_status")),
            total_minor,
            refunded_minor,
            items,
            billing_address: address(o.get("billing_address")),
            shipping_address: address(o.get("shipping_address")),
            created_at,
            updated_at,
            currency: Some(currency),
            order_id,
        }),
    })
}

fn refund(raw: &StoredEvent, r: &Value) -> Result<NormalizedEvent, String> {
    let refund_id = id_of(r.get("id")).ok_or("refund without `id`")?;
    let currency = r
        .get("transactions")
        .and_then(Value::as_array)
        .and_then(|t| t.first())
        .and_then(|t| text(t.get("currency")));
    let amount_minor =
        match &currency {
            Some(c) => Some(refund_total(r, c).ok_or_else(|| {
                format!("refund {refund_id}: a transaction amount is not an amount")
            })?),
            None => None,
        };
    let created_at = time(r, "created_at");
    let processed = time(r, "processed_at");
    Ok(NormalizedEvent {
        thread_refs: Vec::new(),
        channel: CHANNEL.into(),
        direction: Direction::Inbound,
        thread_key: None,
        // A refund names only its order; the customer is found through the order id by
        // whoever reads it (no I/O here).
        claims: Vec::new(),
        occurred_at: created_at
            .or(processed)
            .or(raw.occurred_at)
            .unwrap_or(raw.received_at),
        body: EventBody::Payment(Payment {
            payment_id: refund_id,
            kind: "refund".into(),
            status: Some("succeeded".into()),
            amount_minor,
            currency,
            order_id: id_of(r.get("order_id")),
            invoice_id: None,
            reason: text(r.get("note")),
            created_at,
            updated_at: processed.or(created_at),
        }),
    })
}

fn customer(raw: &StoredEvent, c: &Value) -> Result<NormalizedEvent, String> {
    let external_id = id_of(c.get("id")).ok_or("customer without `id`")?;
    let email = text(c.get("email")).map(|e| e.to_lowercase());
    let phone = text(c.get("phone"));
    let name = full_name(c);
    let updated_at = time(c, "updated_at");
    let created_at = time(c, "created_at");
    Ok(NormalizedEvent {
        thread_refs: Vec::new(),
        channel: CHANNEL.into(),
        direction: Direction::Inbound,
        thread_key: None,
        claims: claims(
            &raw.connector_id,
            Some(external_id.clone()),
            email.clone(),
            phone.clone(),
            name.clone(),
        ),
        occurred_at: updated_at
            .or(created_at)
            .or(raw.occurred_at)
            .unwrap_or(raw.received_at),
        body: EventBody::Profile(Profile {
            external_id,
            name,
            email,
            phone,
            address: address(c.get("default_address")),
            created_at,
            birth_date: None,
            updated_at,
        }),
    })
}

fn unsupported(raw: &StoredEvent, reason: String) -> NormalizedEvent {
    NormalizedEvent {
        thread_refs: Vec::new(),
        channel: CHANNEL.into(),
        direction: Direction::Inbound,
        thread_key: None,
        claims: Vec::new(),
        occurred_at: raw.occurred_at.unwrap_or(raw.received_at),
        body: EventBody::Unsupported { reason },
    }
}

impl Normalizer for ShopifyNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let topic = raw.kind.as_str();
        let json: Value = match serde_json::from_slice(&raw.payload) {
            Ok(v) => v,
            Err(e) => {
                return Ok(vec![unsupported(
                    raw,
                    format!("shopify {topic}: invalid JSON: {e}"),
                )])
            }
        };
        let made = if ORDER_TOPICS.contains(&topic) {
            order(raw, &json)
        } else if CUSTOMER_TOPICS.contains(&topic) {
            customer(raw, &json)
        } else if topic == REFUND_TOPIC {
            refund(raw, &json)
        } else {
            Err("topic is not handled".to_string())
        };
        Ok(vec![made.unwrap_or_else(|why| {
            unsupported(raw, format!("shopify {topic}: {why}"))
        })])
    }
}
