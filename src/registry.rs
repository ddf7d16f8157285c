//! Connector registry: each `[[connectors]]` table becomes one running connector, chosen by
//! `kind` in one exhaustive match. A new provider is one arm here.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_core::{ConfigError, Connector, Env};

/// The kinds this build knows, for error messages and `check-config`.
pub fn kinds() -> Vec<&'static str> {
    let mut k = vec!["generic"];
    k.extend_from_slice(switchboard_social::KINDS);
    k.extend_from_slice(switchboard_email::KINDS);
    k.extend_from_slice(switchboard_commerce::KINDS);
    k.extend_from_slice(switchboard_erp::KINDS);
    k
}

pub struct ConnectorInstance {
    pub id: String,
    pub kind: &'static str,
    pub connector: Box<dyn Connector>,
    /// Replies per second this connector may send (`send_rate_per_sec`, default 10).
    pub send_rate_per_sec: f64,
    /// Replies that may go at once before the rate applies (`send_burst`, default 10).
    pub send_burst: u32,
    /// Poll calls per second to the provider, for the poller and backfill
    /// (`poll_rate_per_sec`, default 5).
    pub poll_rate_per_sec: f64,
}

/// A per-second rate key, validated.
fn rate_key(
    path: &str,
    table: &mut toml::Table,
    key: &str,
    default: f64,
) -> Result<f64, ConfigError> {
    let rate = match table.remove(key) {
        None => default,
        Some(toml::Value::Integer(i)) => i as f64,
        Some(toml::Value::Float(f)) => f,
        Some(_) => {
            return Err(ConfigError::new(
                format!("{path}.{key}"),
                "must be a number",
            ))
        }
    };
    if !(rate > 0.0 && rate <= 10_000.0) {
        return Err(ConfigError::new(
            format!("{path}.{key}"),
            "must be greater than 0 and at most 10000",
        ));
    }
    Ok(rate)
}

/// Takes the hub-level keys out of a connector table, so every kind gets them and each
/// connector's own config stays strict about unknown keys: `(send_rate_per_sec, send_burst,
/// poll_rate_per_sec)`.
fn hub_keys(path: &str, table: &mut toml::Table) -> Result<(f64, u32, f64), ConfigError> {
    let rate = rate_key(path, table, "send_rate_per_sec", 10.0)?;
    let poll_rate = rate_key(path, table, "poll_rate_per_sec", 5.0)?;
    let burst = match table.remove("send_burst") {
        None => 10,
        Some(toml::Value::Integer(i)) if (1..=10_000).contains(&i) => i as u32,
        Some(_) => {
            return Err(ConfigError::new(
                format!("{path}.send_burst"),
                "must be an integer from 1 to 10000",
            ))
        }
    };
    Ok((rate, burst, poll_rate))
}

#[derive(Clone, Default)]
pub struct Registry {
    by_id: HashMap<String, Arc<ConnectorInstance>>,
    order: Vec<String>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Registry {
    pub fn build(tables: &[toml::Value], env: Env<'_>) -> Result<Registry, ConfigError> {
        let mut reg = Registry::default();
        for (i, table) in tables.iter().enumerate() {
            let path = format!("connectors[{i}]");
            let t = table
                .as_table()
                .ok_or_else(|| ConfigError::new(&path, "must be a table"))?;
            let id = match t.get("id") {
                Some(toml::Value::String(s)) => s.clone(),
                Some(_) => return Err(ConfigError::new(format!("{path}.id"), "must be a string")),
                None => return Err(ConfigError::new(format!("{path}.id"), "missing")),
            };
            if !valid_id(&id) {
                return Err(ConfigError::new(
                    format!("{path}.id"),
                    format!("`{id}` must be 1-64 characters of a-z, 0-9, - and _ (it appears in /webhooks/{{id}})"),
                ));
            }
            if reg.by_id.contains_key(&id) {
                return Err(ConfigError::new(
                    format!("{path}.id"),
                    format!("`{id}` is used by another connector"),
                ));
            }
            let mut t = t.clone();
            let (send_rate_per_sec, send_burst, poll_rate_per_sec) = hub_keys(&path, &mut t)?;
            let table = toml::Value::Table(t.clone());
            let kind = match t.get("kind") {
                Some(toml::Value::String(s)) => s.as_str(),
                Some(_) => {
                    return Err(ConfigError::new(format!("{path}.kind"), "must be a string"))
                }
                None => return Err(ConfigError::new(format!("{path}.kind"), "missing")),
            };
            let (kind, connector): (&'static str, Box<dyn Connector>) = match kind {
                "generic" => (
                    "generic",
                    Box::new(switchboard_generic::build(&id, &path, table.clone(), env)?),
                ),
                other => match switchboard_social::build(other, &id, &path, table.clone(), env)
                    .or_else(|| {
                        switchboard_email::build_in(other, &id, &path, table.clone(), env, tables)
                    })
                    .or_else(|| switchboard_commerce::build(other, &id, &path, table.clone(), env))
                    .or_else(|| switchboard_erp::build(other, &id, &path, table.clone(), env))
                {
                    Some(built) => {
                        let c = built?;
                        (c.kind(), c)
                    }
                    None => {
                        return Err(ConfigError::new(
                            format!("{path}.kind"),
                            format!(
                                "unknown kind `{other}`; known kinds: {}",
                                kinds().join(", ")
                            ),
                        ))
                    }
                },
            };
            reg.order.push(id.clone());
            reg.by_id.insert(
                id.clone(),
                Arc::new(ConnectorInstance {
                    id,
                    kind,
                    connector,
                    send_rate_per_sec,
                    send_burst,
                    poll_rate_per_sec,
                }),
            );
        }
        Ok(reg)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<ConnectorInstance>> {
        self.by_id.get(id)
    }

    /// Connectors in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ConnectorInstance>> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}
