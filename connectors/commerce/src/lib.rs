//! Commerce connectors (Shopify, WooCommerce, Stripe). Each provider is one folder (`mod.rs` builds it from its config table;
//! `config`, `webhook`, `normalize`, `poll` as needed) and one arm in `build`, which the hub's
//! registry calls for every kind this crate knows. Their documents (orders, payments,
//! invoices, profiles) are `switchboard_core::commerce` types the hub keeps as entities.

pub mod stripe;

use switchboard_core::{ConfigResult, Connector, Env};

/// The kinds this crate builds, for the hub's error messages.
pub const KINDS: &[&str] = &["stripe"];

/// Builds the connector of `kind`, or `None` when this crate does not know the kind.
pub fn build(
    kind: &str,
    id: &str,
    path: &str,
    table: toml::Value,
    env: Env<'_>,
) -> Option<ConfigResult<Box<dyn Connector>>> {
    // One arm per provider: `"<kind>" => Some(boxed(<provider>::build(id, path, table, env)))`.
    match kind {
        "stripe" => Some(boxed(stripe::build(id, path, table, env))),
        _ => None,
    }
}

fn boxed<C: Connector + 'static>(r: ConfigResult<C>) -> ConfigResult<Box<dyn Connector>> {
    r.map(|c| Box::new(c) as Box<dyn Connector>)
}
