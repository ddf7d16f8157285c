//! Business documents on the timeline: orders, payments, invoices and customer profiles from
//! commerce and ERP systems. Each is an **entity** the hub keeps one current copy of (keyed by
//! connector, kind and id): a later version updates it in place and adds a compact "changed"
//! entry, an older or identical version changes nothing. `updated_at` orders the versions.
//!
//! Money is integer minor units plus an ISO 4217 code, never a float: use `money::minor`.

use serde::{Deserialize, Serialize};

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A postal address as the provider gives it; kept as an attribute, never as an identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 when the provider gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    pub name: String,
    pub quantity: i64,
    /// Price of one unit, minor units of the order's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price_minor: Option<i64>,
}

/// An order (Shopify, WooCommerce, Odoo sale order, ERPNext Sales Order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The provider's id: the entity key within the connector.
    pub order_id: String,
    /// What people call it (`#1001`, `SO042`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// The overall state in the provider's words (`open`, `processing`, `cancelled` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub financial_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfillment_status: Option<String>,
    /// ISO 4217.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_minor: Option<i64>,
    /// Refunded so far, minor units; 0 when nothing was refunded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refunded_minor: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<LineItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    /// When the order was placed, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    /// The provider's last-modified time, unix ms: the version. A version not newer than the
    /// one the hub has changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
}

/// A payment, refund, dispute or completed checkout (Stripe, ERPNext Payment Entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub payment_id: String,
    /// `charge`, `refund`, `dispute`, `checkout`, `payment_entry` …
    pub kind: String,
    /// The provider's word (`succeeded`, `failed`, `needs_response`, `won` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The order or invoice it pays, when the provider links one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<String>,
    /// Why it failed or was disputed, in the provider's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
}

/// An invoice (Odoo `account.move`, ERPNext Sales Invoice, Stripe invoice).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub invoice_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// `draft`, `posted`, `paid`, `cancelled` … in the provider's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_due_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
}

/// A customer record in another system (Shopify customer, Odoo partner, ERPNext Customer):
/// its identities travel as the event's claims; this is what the agent sees of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The system's customer id (also an `external_id` claim scoped to the connector).
    pub external_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// `YYYY-MM-DD` when the system keeps it: weak evidence for merge suggestions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
}

pub mod money {
    //! Exact decimal amounts to integer minor units.

    /// Digits after the decimal point of an ISO 4217 currency (2 unless listed).
    pub fn exponent(currency: &str) -> u32 {
        match currency.to_ascii_uppercase().as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            "CLF" | "UYW" => 4,
            _ => 2,
        }
    }

    /// `"59.90"`, `"59.9"`, `"-3"`, `"1,234.50"` (thousands commas are dropped) in `currency` →
    /// minor units. `None` for anything that is not a plain decimal, for more fraction digits
    /// than the currency has (unless they are zeros), or on overflow. Never goes through a float.
    pub fn minor(amount: &str, currency: &str) -> Option<i64> {
        let exp = exponent(currency) as usize;
        let s = amount.trim().replace(',', "");
        let (neg, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest.to_string()),
            None => (false, s.strip_prefix('+').unwrap_or(&s).to_string()),
        };
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s.as_str(), ""),
        };
        if int.is_empty() && frac.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let (keep, extra) = if frac.len() > exp {
            frac.split_at(exp)
        } else {
            (frac, "")
        };
        if extra.bytes().any(|b| b != b'0') {
            return None;
        }
        let mut digits = String::with_capacity(int.len() + exp);
        digits.push_str(if int.is_empty() { "0" } else { int });
        digits.push_str(keep);
        for _ in keep.len()..exp {
            digits.push('0');
        }
        let v: i64 = digits.parse().ok()?;
        Some(if neg { -v } else { v })
    }

    /// A JSON amount that is a string or a number (`59.9` is read from its decimal text).
    pub fn minor_json(v: &serde_json::Value, currency: &str) -> Option<i64> {
        match v {
            serde_json::Value::String(s) => minor(s, currency),
            serde_json::Value::Number(n) => minor(&n.to_string(), currency),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn decimal_strings_become_exact_minor_units() {
            assert_eq!(minor("59.90", "EUR"), Some(5990));
            assert_eq!(minor("59.9", "eur"), Some(5990));
            assert_eq!(minor("0.1", "USD"), Some(10));
            assert_eq!(minor("1,234.50", "USD"), Some(123450));
            assert_eq!(minor("-3", "USD"), Some(-300));
            assert_eq!(minor("1500", "JPY"), Some(1500));
            assert_eq!(minor("1.234", "KWD"), Some(1234));
            assert_eq!(
                minor("10.000", "USD"),
                Some(1000),
                "trailing zeros are fine"
            );
            assert_eq!(minor(".5", "USD"), Some(50));
        }

        #[test]
        fn anything_else_is_refused_rather_than_rounded() {
            assert_eq!(minor("10.005", "USD"), None);
            assert_eq!(minor("1.5", "JPY"), None);
            assert_eq!(minor("abc", "USD"), None);
            assert_eq!(minor("", "USD"), None);
            assert_eq!(minor("1e3", "USD"), None);
            assert_eq!(minor("99999999999999999999", "USD"), None);
        }

        #[test]
        fn json_numbers_are_read_from_their_decimal_text() {
            assert_eq!(minor_json(&serde_json::json!(59.9), "EUR"), Some(5990));
            assert_eq!(minor_json(&serde_json::json!("19.99"), "EUR"), Some(1999));
            assert_eq!(minor_json(&serde_json::json!(12), "EUR"), Some(1200));
            assert_eq!(minor_json(&serde_json::json!(null), "EUR"), None);
        }
    }
}
