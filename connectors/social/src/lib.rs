//! Social and messaging connectors. Each provider is one folder (`mod.rs` builds it from its
//! config table; `config`, `webhook`, `normalize`, `send`, `poll` as needed) and one arm in
//! `build`, which the hub's registry calls for every kind this crate knows.

pub mod line;
pub mod meta;
pub mod slack;
pub mod telegram;
pub mod twilio;

use switchboard_core::{ConfigResult, Connector, Env};

/// The kinds this crate builds, for the hub's error messages.
pub const KINDS: &[&str] = &[
    "messenger",
    "instagram",
    "whatsapp",
    "telegram",
    "line",
    "twilio",
    "slack",
];

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
        "messenger" | "instagram" | "whatsapp" => {
            meta::Kind::parse(kind).map(|k| boxed(meta::build(k, id, path, table, env)))
        }
        "telegram" => Some(boxed(telegram::build(id, path, table, env))),
        "line" => Some(boxed(line::build(id, path, table, env))),
        "twilio" => Some(boxed(twilio::build(id, path, table, env))),
        "slack" => Some(boxed(slack::build(id, path, table, env))),
        _ => None,
    }
}
