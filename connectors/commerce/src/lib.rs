//! Commerce connectors (Shopify, WooCommerce, Stripe). Each provider is one folder (`mod.rs`
//! builds it from its config table; `config`, `webhook`, `normalize`, `poll` as needed) and one arm in `build`, which the hub's
//! registry calls for every kind this crate knows. Their documents (orders, payments,
//! invoices, profiles) are `switchboard_core::commerce` types the hub keeps as entities.

pub mod shopify;
pub mod stripe;
pub mod woocommerce;

use switchboard_core::{ConfigResult, Connector, Env};

/// The kinds this crate builds, for the hub's error messages.
pub const KINDS: &[&str] = &["shopify", "woocommerce", "stripe"];

fn boxed<C: Connector + 'static>(c: ConfigResult<C>) -> ConfigResult<Box<dyn Connector>> {
    c.map(|c| Box::new(c) as Box<dyn Connector>)
}

/// Builds the connector of `kind`, or `None` when this crate does not know the kind.
pub fn build(
    kind: &str,
    id: &str,
    path: &str,
    table: toml::Value,
    env: Env<'_>,
) -> Option<ConfigResult<Box<dyn Connector>>> {
    match kind {
        "shopify" => Some(boxed(shopify::build(id, path, table, env))),
        "woocommerce" => Some(boxed(woocommerce::build(id, path, table, env))),
        "stripe" => Some(boxed(stripe::build(id, path, table, env))),
        _ => None,
    }
}
