//! Stripe events → business documents. Pure: the event JSON in, documents out.
//!
//! Every document's version (`updated_at`) is the event's `created` in ms: Stripe objects have
//! no modified time, and the events of one object are created in order. The document id is
//! the object's own id (`pi_…`, `re_…`, `dp_…`, `cs_…`, `in_…`, `cus_…`), so later events
//! update the same document; a charge counts as its payment intent's document when it has
//! one, so one payment is one document whichever of its events arrive.

use serde_json::Value;
use switchboard_core::{
    Address, Direction, EventBody, IdentityClaim, Invoice, NormalizeError, NormalizedEvent,
    Normalizer, Payment, Profile, StoredEvent,
};

/// The channel name agents see.
pub const CHANNEL: &str = "stripe";
/// Refunds read from one `charge.refunded` (the embedded list is at most a page anyway).
const MAX_EMBEDDED_REFUNDS: usize = 100;

pub struct StripeNormalizer;

impl Normalizer for StripeNormalizer {
    fn normalize(&self, raw: &StoredEvent) -> Result<Vec<NormalizedEvent>, NormalizeError> {
        Ok(normalize(raw))
    }
}

/// The scope of the claim that ties refunds and disputes (whose objects name no customer) to
/// the customer who paid: the payment intent's id, or the charge's when there is no intent.
pub fn payment_scope(connector_id: &str) -> String {
    format!("stripe-payment:{connector_id}")
}

fn unsupported(
    raw: &StoredEvent,
    reason: String,
    claims: Vec<IdentityClaim>,
) -> Vec<NormalizedEvent> {
    vec![NormalizedEvent {
        thread_refs: Vec::new(),
        channel: CHANNEL.into(),
        direction: Direction::Inbound,
        thread_key: None,
        claims,
        occurred_at: raw.occurred_at.unwrap_or(raw.received_at),
        body: EventBody::Unsupported { reason },
    }]
}

pub fn normalize(raw: &StoredEvent) -> Vec<NormalizedEvent> {
    let Ok(event) = serde_json::from_slice::<Value>(&raw.payload) else {
        return unsupported(raw, "Stripe event is not JSON".into(), vec![]);
    };
    let ty = str_of(&event, "type").unwrap_or("").to_string();
    if str_of(&event, "object") == Some("v2.core.event") {
        return unsupported(
            raw,
            format!("thin Stripe v2 event `{ty}`: it carries no object to show"),
            vec![],
        );
    }
    let occurred = event
        .get("created")
        .and_then(|c| c.as_i64())
        .and_then(|c| c.checked_mul(1000))
        .or(raw.occurred_at)
        .unwrap_or(raw.received_at);
    let Some(obj) = event.pointer("/data/object").filter(|o| o.is_object()) else {
        return unsupported(
            raw,
            format!("Stripe event `{ty}` has no data.object"),
            vec![],
        );
    };
    let claims = claims_of(&raw.connector_id, obj);
    let object = str_of(obj, "object").unwrap_or("");
    let Some(id) = str_of(obj, "id").filter(|s| !s.is_empty()) else {
        return unsupported(
            raw,
            format!("Stripe event `{ty}`: its {object} has no id"),
            claims,
        );
    };
    let ev = |body: EventBody, claims: Vec<IdentityClaim>| NormalizedEvent {
        thread_refs: Vec::new(),
        channel: CHANNEL.into(),
        direction: Direction::Inbound,
        thread_key: None,
        claims,
        occurred_at: occurred,
        body,
    };
    let version = Some(occurred);
    let family = ty.split('.').next().unwrap_or("");
    match (family, object) {
        ("payment_intent", "payment_intent") => {
            let status = if ty == "payment_intent.payment_failed" {
                Some("failed".to_string())
            } else {
                string(obj, "status")
            };
            vec![ev(
                EventBody::Payment(Payment {
                    payment_id: id.to_string(),
                    kind: "charge".into(),
                    status,
                    amount_minor: int(obj, "amount"),
                    currency: currency(obj),
                    order_id: None,
                    invoice_id: id_of(obj.get("invoice")),
                    reason: obj
                        .pointer("/last_payment_error/message")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    // A charge updates this document too and cannot know the intent's
                    // creation time: the entry's time is the first event's.
                    created_at: None,
                    updated_at: version,
                }),
                claims,
            )]
        }
        ("charge", "charge") => {
            let refunded = obj.get("refunded").and_then(Value::as_bool) == Some(true);
            let status = if refunded {
                Some("refunded".to_string())
            } else if int(obj, "amount_refunded").is_some_and(|a| a > 0) {
                Some("partially_refunded".to_string())
            } else {
                string(obj, "status")
            };
            let mut out = vec![ev(
                EventBody::Payment(Payment {
                    payment_id: id_of(obj.get("payment_intent")).unwrap_or_else(|| id.to_string()),
                    kind: "charge".into(),
                    status,
                    amount_minor: int(obj, "amount"),
                    currency: currency(obj),
                    order_id: None,
                    invoice_id: id_of(obj.get("invoice")),
                    reason: string(obj, "failure_message"),
                    created_at: None,
                    updated_at: version,
                }),
                claims.clone(),
            )];
            // API versions before 2022-11-15 embed the refunds; later ones send refund.* too.
            if let Some(list) = obj.pointer("/refunds/data").and_then(Value::as_array) {
                for r in list.iter().take(MAX_EMBEDDED_REFUNDS) {
                    if let Some(p) = refund(r, version) {
                        out.push(ev(EventBody::Payment(p), claims.clone()));
                    }
                }
            }
            out
        }
        ("charge", "dispute") => vec![ev(
            EventBody::Payment(Payment {
                payment_id: id.to_string(),
                kind: "dispute".into(),
                status: string(obj, "status"),
                amount_minor: int(obj, "amount"),
                currency: currency(obj),
                order_id: None,
                invoice_id: None,
                reason: string(obj, "reason"),
                created_at: ms(obj, "created"),
                updated_at: version,
            }),
            claims,
        )],
        ("refund" | "charge", "refund") => match refund(obj, version) {
            Some(p) => vec![ev(EventBody::Payment(p), claims)],
            None => unsupported(
                raw,
                format!("Stripe event `{ty}`: unreadable refund"),
                claims,
            ),
        },
        ("checkout", "checkout.session") => vec![ev(
            EventBody::Payment(Payment {
                payment_id: id.to_string(),
                kind: "checkout".into(),
                status: string(obj, "payment_status").or_else(|| string(obj, "status")),
                amount_minor: int(obj, "amount_total"),
                currency: currency(obj),
                order_id: string(obj, "client_reference_id"),
                invoice_id: id_of(obj.get("invoice")),
                reason: None,
                created_at: ms(obj, "created"),
                updated_at: version,
            }),
            claims,
        )],
        ("invoice", "invoice") => vec![ev(
            EventBody::Invoice(Invoice {
                invoice_id: id.to_string(),
                number: string(obj, "number"),
                status: string(obj, "status"),
                currency: currency(obj),
                total_minor: int(obj, "total"),
                amount_due_minor: int(obj, "amount_due"),
                order_id: None,
                due_date: obj
                    .get("due_date")
                    .and_then(Value::as_i64)
                    .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                    .map(|d| d.format("%Y-%m-%d").to_string()),
                created_at: ms(obj, "created"),
                updated_at: version,
            }),
            claims,
        )],
        ("customer", "customer")
            if obj.get("deleted").and_then(Value::as_bool) == Some(true)
                || ty == "customer.deleted" =>
        {
            unsupported(raw, format!("Stripe customer {id} was deleted"), claims)
        }
        ("customer", "customer") => vec![ev(
            EventBody::Profile(Profile {
                external_id: id.to_string(),
                name: string(obj, "name"),
                email: email(obj.get("email")),
                phone: string(obj, "phone"),
                address: obj.get("address").and_then(address),
                created_at: ms(obj, "created"),
                birth_date: None,
                updated_at: version,
            }),
            claims,
        )],
        _ => unsupported(
            raw,
            format!("Stripe event `{ty}` ({object}) is not handled"),
            claims,
        ),
    }
}

fn refund(r: &Value, version: Option<i64>) -> Option<Payment> {
    if str_of(r, "object") != Some("refund") {
        return None;
    }
    let id = str_of(r, "id").filter(|s| !s.is_empty())?;
    Some(Payment {
        payment_id: id.to_string(),
        kind: "refund".into(),
        status: string(r, "status"),
        amount_minor: int(r, "amount"),
        currency: currency(r),
        order_id: None,
        invoice_id: None,
        reason: string(r, "failure_reason").or_else(|| string(r, "reason")),
        created_at: ms(r, "created"),
        updated_at: version,
    })
}

/// Who the object belongs to: the Stripe customer (`external_id` scoped to the connector) with
/// the email, phone and name the object carries, and the payment it belongs to (see
/// `payment_scope`), so that refunds and disputes land on the payer's timeline.
pub fn claims_of(connector_id: &str, obj: &Value) -> Vec<IdentityClaim> {
    let mut c = Claims::default();
    let object = str_of(obj, "object").unwrap_or("");
    if object == "customer" {
        if let Some(id) = str_of(obj, "id").filter(|s| !s.is_empty()) {
            c.push(IdentityClaim::external_id(connector_id, id));
        }
        c.person(obj.get("email"), obj.get("phone"), obj.get("name"));
    }
    if let Some(customer) = obj.get("customer") {
        if let Some(id) = id_of(Some(customer)) {
            c.push(IdentityClaim::external_id(connector_id, id));
        }
        if customer.is_object() {
            c.person(
                customer.get("email"),
                customer.get("phone"),
                customer.get("name"),
            );
        }
    }
    for details in ["customer_details", "billing_details"] {
        if let Some(d) = obj.get(details) {
            c.person(d.get("email"), d.get("phone"), d.get("name"));
        }
    }
    c.person(obj.get("receipt_email"), None, None);
    c.person(
        obj.get("customer_email"),
        obj.get("customer_phone"),
        obj.get("customer_name"),
    );
    if let Some(e) = obj.get("evidence") {
        c.person(
            e.get("customer_email_address"),
            None,
            e.get("customer_name"),
        );
    }
    // Payment intents of API versions before 2022-11-15 embed their charges.
    if let Some(d) = obj.pointer("/charges/data/0/billing_details") {
        c.person(d.get("email"), d.get("phone"), d.get("name"));
    }
    let payment = match object {
        "payment_intent" => str_of(obj, "id").map(str::to_string),
        _ => id_of(obj.get("payment_intent")).or_else(|| {
            if object == "charge" {
                str_of(obj, "id").map(str::to_string)
            } else {
                id_of(obj.get("charge"))
            }
        }),
    };
    if let Some(p) = payment.filter(|p| !p.is_empty()) {
        c.push(IdentityClaim::platform_id(payment_scope(connector_id), p));
    }
    c.0
}

#[derive(Default)]
struct Claims(Vec<IdentityClaim>);

impl Claims {
    fn push(&mut self, claim: IdentityClaim) {
        if !self.0.contains(&claim) {
            self.0.push(claim);
        }
    }

    fn person(&mut self, mail: Option<&Value>, phone: Option<&Value>, name: Option<&Value>) {
        if let Some(e) = email(mail) {
            self.push(IdentityClaim::email(e));
        }
        if let Some(p) = phone
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            self.push(IdentityClaim::phone(p));
        }
        let name = name
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty());
        // One display name per event: the most specific source comes first.
        if let Some(n) = name {
            if !self
                .0
                .iter()
                .any(|c| c.kind == switchboard_core::ClaimKind::Name)
            {
                self.push(IdentityClaim::name(n));
            }
        }
    }
}

fn email(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(|e| e.trim().to_lowercase())
        .filter(|e| e.contains('@'))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn string(v: &Value, key: &str) -> Option<String> {
    str_of(v, key)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Stripe amounts are integers in minor units already.
fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn currency(v: &Value) -> Option<String> {
    string(v, "currency").map(|c| c.to_ascii_uppercase())
}

/// Unix seconds at `key`, as ms.
fn ms(v: &Value, key: &str) -> Option<i64> {
    v.get(key)?.as_i64()?.checked_mul(1000)
}

/// An id given as a string or as an expanded object with an `id`.
fn id_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        _ => None,
    }
}

fn address(a: &Value) -> Option<Address> {
    if !a.is_object() {
        return None;
    }
    let addr = Address {
        line1: string(a, "line1"),
        line2: string(a, "line2"),
        city: string(a, "city"),
        region: string(a, "state"),
        postal_code: string(a, "postal_code"),
        country: string(a, "country"),
        ..Address::default()
    };
    (addr != Address::default()).then_some(addr)
}
