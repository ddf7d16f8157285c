//! One ERPNext document (webhook body or polled row) → one business document: Customer →
//! Profile, Sales Order → Order, Sales Invoice → Invoice, Payment Entry → Payment. Pure: the
//! doctype is the raw event's kind, the version its `modified`.

use serde_json::Value;
use switchboard_core::{
    Direction, EventBody, IdentityClaim, Invoice, LineItem, NormalizeError, NormalizedEvent,
    Normalizer, Order, Payment, Profile, StoredEvent,
};

use crate::common::{amount_minor, datetime_ms, phone, quantity, text};

pub const CHANNEL: &str = "erpnext";

/// Child rows read per document, a bound on what one event can make.
const MAX_ROWS: usize = 500;

pub struct ErpNextNormalizer;

fn email(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| text(v, k))
        .map(|e| e.to_lowercase())
}

fn phone_of(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| text(v, k)).and_then(|p| phone(&p))
}

/// The customer a document belongs to: its name in this ERPNext (the same claim its profile
/// makes), its display name, and the contact's email and phone when the document has them.
fn customer_claims(
    connector_id: &str,
    customer: Option<String>,
    display: Option<String>,
    v: &Value,
) -> Vec<IdentityClaim> {
    let mut claims = Vec::new();
    if let Some(c) = customer {
        claims.push(IdentityClaim::external_id(connector_id, c));
    }
    if let Some(e) = email(v, &["contact_email"]) {
        claims.push(IdentityClaim::email(e));
    }
    if let Some(p) = phone_of(v, &["contact_mobile", "contact_phone"]) {
        claims.push(IdentityClaim::phone(p));
    }
    if let Some(n) = display {
        claims.push(IdentityClaim::name(n));
    }
    claims
}

fn customer(
    v: &Value,
    name: &str,
    cid: &str,
    updated_at: Option<i64>,
) -> (Vec<IdentityClaim>, EventBody) {
    let email = email(v, &["email_id"]);
    let phone_no = phone_of(v, &["mobile_no", "phone"]);
    let display = text(v, "customer_name");
    let mut claims = vec![IdentityClaim::external_id(cid, name)];
    if let Some(e) = &email {
        claims.push(IdentityClaim::email(e.clone()));
    }
    if let Some(p) = &phone_no {
        claims.push(IdentityClaim::phone(p.clone()));
    }
    if let Some(n) = &display {
        claims.push(IdentityClaim::name(n.clone()));
    }
    let body = EventBody::Profile(Profile {
        external_id: name.to_string(),
        name: display,
        email,
        phone: phone_no,
        address: None,
        created_at: text(v, "creation").and_then(|d| datetime_ms(&d)),
        birth_date: None,
        updated_at,
    });
    (claims, body)
}

fn rows<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or(&[])
        .iter()
        .take(MAX_ROWS)
}

fn sales_order(
    v: &Value,
    name: &str,
    cid: &str,
    updated_at: Option<i64>,
) -> (Vec<IdentityClaim>, EventBody) {
    let currency = text(v, "currency");
    let minor = |x: Option<&Value>| currency.as_deref().and_then(|c| amount_minor(x?, c));
    let items = rows(v, "items")
        .map(|i| LineItem {
            sku: text(i, "item_code"),
            name: text(i, "item_name")
                .or_else(|| text(i, "item_code"))
                .unwrap_or_default(),
            quantity: i.get("qty").and_then(quantity).unwrap_or(0),
            unit_price_minor: minor(i.get("rate")),
        })
        .collect();
    let body = EventBody::Order(Order {
        order_id: name.to_string(),
        number: Some(name.to_string()),
        status: text(v, "status"),
        total_minor: minor(v.get("grand_total")),
        currency: currency.clone(),
        items,
        created_at: text(v, "creation").and_then(|d| datetime_ms(&d)),
        updated_at,
        ..Order::default()
    });
    let claims = customer_claims(cid, text(v, "customer"), text(v, "customer_name"), v);
    (claims, body)
}

fn sales_invoice(
    v: &Value,
    name: &str,
    cid: &str,
    updated_at: Option<i64>,
) -> (Vec<IdentityClaim>, EventBody) {
    let currency = text(v, "currency");
    let minor = |k: &str| currency.as_deref().and_then(|c| amount_minor(v.get(k)?, c));
    // The first item's sales order links the invoice to it, when the invoice was made from one.
    let order_id = rows(v, "items").find_map(|i| text(i, "sales_order"));
    let body = EventBody::Invoice(Invoice {
        invoice_id: name.to_string(),
        number: Some(name.to_string()),
        status: text(v, "status"),
        total_minor: minor("grand_total"),
        amount_due_minor: minor("outstanding_amount"),
        currency: currency.clone(),
        order_id,
        due_date: text(v, "due_date"),
        created_at: text(v, "creation").and_then(|d| datetime_ms(&d)),
        updated_at,
    });
    let claims = customer_claims(cid, text(v, "customer"), text(v, "customer_name"), v);
    (claims, body)
}

fn payment_entry(
    v: &Value,
    name: &str,
    cid: &str,
    updated_at: Option<i64>,
) -> (Vec<IdentityClaim>, EventBody) {
    // Received from a customer, the amount is in the receivable account's currency.
    let currency = text(v, "paid_from_account_currency")
        .or_else(|| text(v, "paid_to_account_currency"))
        .or_else(|| text(v, "currency"));
    let reference = |doctype: &str| {
        rows(v, "references")
            .find(|r| text(r, "reference_doctype").as_deref() == Some(doctype))
            .and_then(|r| text(r, "reference_name"))
    };
    let body = EventBody::Payment(Payment {
        payment_id: name.to_string(),
        kind: "payment_entry".into(),
        status: text(v, "status"),
        amount_minor: currency
            .as_deref()
            .and_then(|c| amount_minor(v.get("paid_amount")?, c)),
        currency: currency.clone(),
        order_id: reference("Sales Order"),
        invoice_id: reference("Sales Invoice"),
        reason: None,
        created_at: text(v, "creation").and_then(|d| datetime_ms(&d)),
        updated_at,
    });
    let is_customer = text(v, "party_type").as_deref() == Some("Customer");
    let claims = if is_customer {
        customer_claims(cid, text(v, "party"), text(v, "party_name"), v)
    } else {
        customer_claims(cid, None, None, v)
    };
    (claims, body)
}

impl Normalizer for ErpNextNormalizer {
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
            return unsupported(format!("{}: the document is not JSON", raw.kind));
        };
        let Some(name) = text(&v, "name") else {
            return unsupported(format!("{}: the document has no name", raw.kind));
        };
        let updated_at = text(&v, "modified").and_then(|d| datetime_ms(&d));
        let cid = raw.connector_id.as_str();
        let (claims, body) = match raw.kind.as_str() {
            "Customer" => customer(&v, &name, cid, updated_at),
            "Sales Order" => sales_order(&v, &name, cid, updated_at),
            "Sales Invoice" => sales_invoice(&v, &name, cid, updated_at),
            "Payment Entry" => payment_entry(&v, &name, cid, updated_at),
            other => return unsupported(format!("doctype {other} is not mapped")),
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
