//! Social and messaging connectors. Each provider is one folder (`mod.rs` builds it from its
//! config table; `config`, `webhook`, `normalize`, `send`, `poll` as needed) and one arm in
//! `build`, which the hub's registry calls for every kind this crate knows.

pub mod line;
pub mod slack;

use switchboard_core::{ConfigResult, Connector, Env};

/// The kinds this crate builds, for the hub's error messages.
pub const KINDS: &[&str] = &["line", "slack"];

/// Builds the connector of `kind`, or `None` when this crate does not know the kind.
pub fn build(
    kind: &str,
    id: &str,
    path: &str,
    table: toml::Value,
    env: Env<'_>,
) -> Option<ConfigResult<Box<dyn Connector>>> {
    match kind {
        "line" => {
            Some(line::build(id, path, table, env).map(|c| Box::new(c) as Box<dyn Connector>))
        }
        "slack" => {
            Some(slack::build(id, path, table, env).map(|c| Box::new(c) as Box<dyn Connector>))
        }
        _ => None,
    }
}
