//! One Odoo record (as `search_read` returned it) → one business document: `res.partner` →
//! Profile, `sale.order` → Order, `account.move` (customer invoice or credit note) → Invoice.
//! Pure: the model is the raw event's kind, the version its `write_date`.

use serde_json::Value;
use switchboard_core::{
    Address, Direction, EventBody, IdentityClaim, Invoice, NormalizeError, NormalizedEvent,
    Normalizer, Order, Profile, StoredEvent,
};

use crate::common::{amount_minor, datetime_ms, phone, text};

pub const CHANNEL: &str = "odoo";

pub struct OdooNormalizer;

/// The display half of a many2one `[id, "display"]` (Odoo sends `false` when empty).
fn m2o_name(v: &Value, key: &str) -> Option<String> {
    v.get(key)?
        .as_array()?
        .get(1)?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn m2o_id(v: &Value, key: &str) -> Option<i64> {
    v.get(key)?.as_array()?.first()?.as_i64()
}

/// The claims of the partner a document belongs to: its id in this Odoo (the same claim its
/// profile makes) and its display name.
fn partner_claims(v: &Value, connector_id: &str) -> Vec<IdentityClaim> {
    let mut claims = Vec::new();
    if let Some(id) = m2o_id(v, "partner_id") {
        claims.push(IdentityClaim::external_id(
            connector_id,
            format!("partner:{id}"),
        ));
    }
    if let Some(name) = m2o_name(v, "partner_id") {
        claims.push(IdentityClaim::name(name));
    }
    claims
}

/// Odoo's `name` is `/` on a draft that has no number yet.
fn number(v: &Value) -> Option<String> {
    text(v, "name").filter(|n| n != "/")
}

fn profile(
    v: &Value,
    id: i64,
    connector_id: &str,
    updated_at: Option<i64>,
) -> (Vec<IdentityClaim>, EventBody) {
    let email = text(v, "email").map(|e| e.to_lowercase());
    let phone_no = text(v, "mobile")
        .or_else(|| text(v, "phone"))
        .and_then(|p| phone(&p));
    let name = text(v, "name");
    let external_id = format!("partner:{id}");
    let mut claims = vec![IdentityClaim::external_id(
        connector_id,
        external_id.clone(),
    )];
    if let Some(e) = &email {
        claims.push(IdentityClaim::email(e.clone()));
    }
    // Both numbers identify the person; `mobile` is the one messaging apps know.
    for key in ["mobile", "phone"] {
        if let Some(p) = text(v, key).and_then(|p| phone(&p)) {
            if !claims.iter().any(|c| c.value == p) {
                claims.push(IdentityClaim::phone(p));
            }
        }
    }
    if let Some(n) = &name {
        claims.push(IdentityClaim::name(n.clone()));
    }
    let address = Address {
        line1: text(v, "street"),
        line2: text(v, "street2"),
        city: text(v, "city"),
        postal_code: text(v, "zip"),
        region: m2o_name(v, "state_id"),
        ..Address::default()
    };
    let address = (address != Address::default()).then_some(address);
    let body = EventBody::Profile(Profile {
        external_id,
        name,
        email,
        phone: phone_no,
        address,
        created_at: text(v, "create_date").and_then(|d| datetime_ms(&d)),
        birth_date: None,
        updated_at,
    });
    (claims, body)
}

fn order(
    v: &Value,
    id: i64,
    connector_id: &str,
    updated_at: Option<i64>,
) -> (Vec<IdentityClaim>, EventBody) {
    let currency = m2o_name(v, "currency_id");
    let total_minor = currency
        .as_deref()
        .and_then(|c| amount_minor(v.get("amount_total")?, c));
    let body = EventBody::Order(Order {
        order_id: id.to_string(),
        number: number(v),
        status: text(v, "state"),
        currency,
        total_minor,
        created_at: text(v, "date_order")
            .or_else(|| text(v, "create_date"))
            .and_then(|d| datetime_ms(&d)),
        updated_at,
        ..Order::default()
    });
    (partner_claims(v, connector_id), body)
}

/// `draft`, `cancel`, or for a posted move its payment state (`not_paid`, `partial`,
/// `in_payment`, `paid`, `reversed`), so that "posted then paid" is one status change.
fn invoice_status(v: &Value) -> Option<String> {
    let state = text(v, "state")?;
    if state == "posted" {
        return Some(text(v, "payment_state").unwrap_or(state));
    }
    Some(state)
}

fn invoice(
    v: &Value,
    id: i64,
    connector_id: &str,
    updated_at: Option<i64>,
) -> (Vec<IdentityClaim>, EventBody) {
    let currency = m2o_name(v, "currency_id");
    // A credit note owes the customer: its amounts are negative.
    let sign = if text(v, "move_type").as_deref() == Some("out_refund") {
        -1
    } else {
        1
    };
    let amount = |key: &str| {
        currency
            .as_deref()
            .and_then(|c| amount_minor(v.get(key)?, c))
            .map(|m| m * sign)
    };
    let body = EventBody::Invoice(Invoice {
        invoice_id: id.to_string(),
        number: number(v),
        status: invoice_status(v),
        total_minor: amount("amount_total"),
        amount_due_minor: amount("amount_residual"),
        currency: currency.clone(),
        order_id: None,
        due_date: text(v, "invoice_date_due"),
        created_at: text(v, "invoice_date")
            .map(|d| format!("{d} 00:00:00"))
            .or_else(|| text(v, "create_date"))
            .and_then(|d| datetime_ms(&d)),
        updated_at,
    });
    (partner_claims(v, connector_id), body)
}

impl Normalizer for OdooNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let unsupported = |reason: String| {
            Ok(vec![NormalizedEvent {
                thread_refs: Vec::new(),
                channel: CHANNEL.into(),
                direction: Direction::Inbound,
                thread_key: None,
                claims: Vec::new(),
                occurred_at: raw.occurred_at.unwrap_or(raw.received_at),
                body: EventBody::Unsupported { reason },
            }])
        };
        let Ok(v) = serde_json::from_slice::<Value>(&raw.payload) else {
            return unsupported(format!("{}: the record is not JSON", raw.kind));
        };
        let Some(id) = v.get("id").and_then(Value::as_i64) else {
            return unsupported(format!("{}: the record has no id", raw.kind));
        };
        let updated_at = text(&v, "write_date").and_then(|d| datetime_ms(&d));
        let cid = raw.connector_id.as_str();
        let (claims, body) = match raw.kind.as_str() {
            "res.partner" => profile(&v, id, cid, updated_at),
            "sale.order" => order(&v, id, cid, updated_at),
            "account.move" => match text(&v, "move_type").as_deref() {
                Some("out_invoice" | "out_refund") => invoice(&v, id, cid, updated_at),
                other => {
                    return unsupported(format!(
                        "account.move {id}: move_type {} is not a customer invoice",
                        other.unwrap_or("(none)")
                    ))
                }
            },
            other => return unsupported(format!("model {other} is not mapped")),
        };
        Ok(vec![NormalizedEvent {
            thread_refs: Vec::new(),
            channel: CHANNEL.into(),
            direction: Direction::Inbound,
            thread_key: None,
            claims,
            occurred_at: updated_at.or(raw.occurred_at).unwrap_or(raw.received_at),
            body,
        }])
    }
}
