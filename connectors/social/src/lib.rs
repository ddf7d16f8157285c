//! Social and messaging connectors. Each provider is one folder (`mod.rs` builds it from its
//! config table; `config`, `webhook`, `normalize`, `send`, `poll` as needed) and one arm in
//! `build`, which the hub's registry calls for every kind this crate knows.

use switchboard_core::{ConfigResult, Connector, Env};

pub mod telegram;

/// The kinds this crate builds, for the hub's error messages.
pub const KINDS: &[&str] = &["telegram"];

/// Builds the connector of `kind`, or `None` when this crate does not know the kind.
pub fn build(
    kind: &str,
    id: &str,
    path: &str,
    table: toml::Value,
    env: Env<'_>,
) -> Option<ConfigResult<Box<dyn Connector>>> {
    // One arm per provider: `"<kind>" => Some(<provider>::build(id, path, table, env))`.
    match kind {
        "telegram" => {
            Some(telegram::build(id, path, table, env).map(|c| Box::new(c) as Box<dyn Connector>))
        }
        _ => None,
    }
}
