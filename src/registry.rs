//! Connector registry: each `[[connectors]]` table becomes one running connector, chosen by
//! `kind` in one exhaustive match. A new provider is one arm here.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_core::{ConfigError, Connector, Env};

/// The kinds this build knows, for error messages and `check-config`.
pub const KINDS: &[&str] = &["generic"];

pub struct ConnectorInstance {
    pub id: String,
    pub kind: &'static str,
    pub connector: Box<dyn Connector>,
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
                other => {
                    return Err(ConfigError::new(
                        format!("{path}.kind"),
                        format!("unknown kind `{other}`; known kinds: {}", KINDS.join(", ")),
                    ))
                }
            };
            reg.order.push(id.clone());
            reg.by_id.insert(
                id.clone(),
                Arc::new(ConnectorInstance {
                    id,
                    kind,
                    connector,
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
