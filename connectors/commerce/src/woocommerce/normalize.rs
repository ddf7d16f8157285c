//! WooCommerce REST v3 resources (webhook bodies and polled pages have the same shape) to
//! business documents: orders (with the customer's checkout note) and customers. Pure.

use serde_json::Value;
use switchboard_core::money::minor_json;
use switchboard_core::{
    Address, Direction, EventBody, IdentityClaim, LineItem, NormalizeError, NormalizedEvent,
    Normalizer, Order, Profile, StoredEvent,
};

use crate::shopify::normalize::id_of;

pub const CHANNEL: &str = "woocommerce";

/// Topics whose body is a whole order.
pub const ORDER_TOPICS: [&str; 3] = ["order.created", "order.updated", "order.restored"];
pub const ORDER_DELETED: &str = "order.deleted";
pub const CUSTOMER_TOPICS: [&str; 2] = ["customer.created", "customer.updated"];
pub const CUSTOMER_DELETED: &str = "customer.deleted";

/// WooCommerce's `*_gmt` times (`2017-03-22T16:28:08`, UTC without an offset), or RFC 3339.
pub fn parse_gmt(s: &str) -> Option<i64> {
    let s = s.trim();
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(|t| t.and_utc().timestamp_millis())
        })
}

fn time(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_str).and_then(parse_gmt)
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The provider event id of a document version (`order:<id>:<date_modified_gmt ms>`), the
/// same whether it arrives by webhook or by poll; a deletion by its delivery. `None` when the
/// body is not a known document.
pub fn event_id(topic: &str, json: &Value, delivery: Option<&str>) -> Option<String> {
    let id = id_of(json.get("id"))?;
    let deleted = |what: &str| match delivery {
        Some(d) => format!("{what}:{id}:deleted:{d}"),
        None => format!("{what}:{id}:deleted"),
    };
    if ORDER_TOPICS.contains(&topic) {
        Some(format!("order:{id}:{}", time(json, "date_modified_gmt")?))
    } else if CUSTOMER_TOPICS.contains(&topic) {
        Some(format!(
            "customer:{id}:{}",
            time(json, "date_modified_gmt")?
        ))
    } else if topic == ORDER_DELETED {
        Some(deleted("order"))
    } else if topic == CUSTOMER_DELETED {
        Some(deleted("customer"))
    } else {
        None
    }
}

fn full_name(v: &Value) -> Option<String> {
    let n = [text(v.get("first_name")), text(v.get("last_name"))]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    (!n.is_empty()).then_some(n)
}

fn address(v: Option<&Value>) -> Option<Address> {
    let v = v.filter(|v| v.is_object())?;
    let a = Address {
        name: full_name(v),
        company: text(v.get("company")),
        line1: text(v.get("address_1")),
        line2: text(v.get("address_2")),
        city: text(v.get("city")),
        region: text(v.get("state")),
        postal_code: text(v.get("postcode")),
        country: text(v.get("country")),
        phone: text(v.get("phone")),
    };
    // WooCommerce sends every field, empty, for a customer without an address.
    (a != Address::default()).then_some(a)
}

/// `customer_id` 0 is a guest checkout: no customer record to claim.
fn customer_id(v: Option<&Value>) -> Option<String> {
    id_of(v).filter(|id| id != "0")
}

fn claims(
    connector_id: &str,
    customer: Option<String>,
    contact: Option<&Value>,
) -> Vec<IdentityClaim> {
    let mut c = Vec::new();
    if let Some(id) = customer {
        c.push(IdentityClaim::external_id(connector_id, id));
    }
    if let Some(b) = contact {
        if let Some(e) = text(b.get("email")) {
            c.push(IdentityClaim::email(e.to_lowercase()));
        }
        if let Some(p) = text(b.get("phone")) {
            c.push(IdentityClaim::phone(p));
        }
        if let Some(n) = full_name(b) {
            c.push(IdentityClaim::name(n));
        }
    }
    c
}

fn event(
    raw: &StoredEvent,
    at: Option<i64>,
    claims: Vec<IdentityClaim>,
    body: EventBody,
) -> NormalizedEvent {
    NormalizedEvent {
        thread_refs: Vec::new(),
        channel: CHANNEL.into(),
        direction: Direction::Inbound,
        thread_key: None,
        claims,
        occurred_at: at.or(raw.occurred_at).unwrap_or(raw.received_at),
        body,
    }
}

fn order(raw: &StoredEvent, o: &Value) -> Result<Vec<NormalizedEvent>, String> {
    let order_id = id_of(o.get("id")).ok_or("order without `id`")?;
    let currency = text(o.get("currency")).ok_or("order without `currency`")?;
    let total_minor = match o.get("total") {
        Some(v) => Some(
            minor_json(v, &currency)
                .ok_or_else(|| format!("order {order_id}: total is not an amount"))?,
        ),
        None => None,
    };
    // Refunds are listed with negative totals.
    let refunded_minor = o
        .get("refunds")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .take(1000)
                .filter_map(|r| minor_json(r.get("total")?, &currency))
                .fold(0i64, |a, t| a.saturating_add(t.saturating_abs()))
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
                    name: text(l.get("name")).unwrap_or_default(),
                    quantity: l.get("quantity").and_then(Value::as_i64).unwrap_or(0),
                    unit_price_minor: l.get("price").and_then(|p| minor_json(p, &currency)),
                })
                .collect()
        })
        .unwrap_or_default();
    let billing = o.get("billing").filter(|b| b.is_object());
    let updated_at = time(o, "date_modified_gmt");
    let created_at = time(o, "date_created_gmt");
    let claims = claims(
        &raw.connector_id,
        customer_id(o.get("customer_id")),
        billing,
    );
    let number = text(o.get("number")).or_else(|| Some(order_id.clone()));
    let mut out = vec![event(
        raw,
        updated_at.or(created_at),
        claims.clone(),
        EventBody::Order(Order {
            number: number.clone(),
            status: text(o.get("status")),
            currency: Some(currency),
            total_minor,
            refunded_minor,
            items,
            billing_address: address(billing),
            shipping_address: address(o.get("shipping")),
            created_at,
            updated_at,
            order_id,
            ..Default::default()
        }),
    )];
    // The customer's checkout note, once: with the order's creation, not with every update.
    if raw.kind == "order.created" {
        if let Some(note) = text(o.get("customer_note")) {
            out.push(event(
                raw,
                created_at.or(updated_at),
                claims,
                EventBody::Note {
                    text: format!(
                        "Customer note on order {}: {note}",
                        number.unwrap_or_default()
                    ),
                },
            ));
        }
    }
    Ok(out)
}

fn customer(raw: &StoredEvent, c: &Value) -> Result<Vec<NormalizedEvent>, String> {
    let external_id = id_of(c.get("id")).ok_or("customer without `id`")?;
    let billing = c.get("billing").filter(|b| b.is_object());
    let email = text(c.get("email"))
        .or_else(|| billing.and_then(|b| text(b.get("email"))))
        .map(|e| e.to_lowercase());
    let phone = billing.and_then(|b| text(b.get("phone")));
    let name = full_name(c).or_else(|| billing.and_then(full_name));
    let mut claims = vec![IdentityClaim::external_id(&raw.connector_id, &external_id)];
    claims.extend(email.clone().map(IdentityClaim::email));
    claims.extend(phone.clone().map(IdentityClaim::phone));
    claims.extend(name.clone().map(IdentityClaim::name));
    let updated_at = time(c, "date_modified_gmt");
    let created_at = time(c, "date_created_gmt");
    Ok(vec![event(
        raw,
        updated_at.or(created_at),
        claims,
        EventBody::Profile(Profile {
            external_id,
            name,
            email,
            phone,
            address: address(billing),
            created_at,
            birth_date: None,
            updated_at,
        }),
    )])
}

fn deleted(raw: &StoredEvent, json: &Value) -> Result<Vec<NormalizedEvent>, String> {
    let id = id_of(json.get("id")).ok_or("deletion without `id`")?;
    // The body is only `{"id":N}`; the version is when the deletion reached us.
    let at = raw.occurred_at.unwrap_or(raw.received_at);
    Ok(vec![if raw.kind == ORDER_DELETED {
        event(
            raw,
            Some(at),
            Vec::new(),
            EventBody::Order(Order {
                order_id: id,
                status: Some("deleted".into()),
                updated_at: Some(at),
                ..Default::default()
            }),
        )
    } else {
        event(
            raw,
            Some(at),
            vec![IdentityClaim::external_id(&raw.connector_id, &id)],
            EventBody::Note {
                text: format!("WooCommerce customer {id} was deleted"),
            },
        )
    }])
}

pub struct WooNormalizer;

impl Normalizer for WooNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        let topic = raw.kind.as_str();
        let unsupported = |why: String| {
            vec![event(
                raw,
                None,
                Vec::new(),
                EventBody::Unsupported {
                    reason: format!("woocommerce {topic}: {why}"),
                },
            )]
        };
        let json: Value = match serde_json::from_slice(&raw.payload) {
            Ok(v) => v,
            Err(e) => return Ok(unsupported(format!("invalid JSON: {e}"))),
        };
        let made = if ORDER_TOPICS.contains(&topic) {
            order(raw, &json)
        } else if CUSTOMER_TOPICS.contains(&topic) {
            customer(raw, &json)
        } else if topic == ORDER_DELETED || topic == CUSTOMER_DELETED {
            deleted(raw, &json)
        } else {
            Err("topic is not handled".to_string())
        };
        Ok(made.unwrap_or_else(unsupported))
    }
}
