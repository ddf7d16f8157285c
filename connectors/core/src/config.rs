//! Config helpers: every connector validates its table without I/O and names the exact key
//! that is wrong (`connectors[2].secret: missing`). Any secret `foo` may be given as
//! `foo_env = "VAR"`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A config error that names the exact key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.key, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

pub type ConfigResult<T> = Result<T, ConfigError>;

/// A secret value. Prints as `[redacted]` so it never reaches a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Where `_env` secrets are read from; a function so tests need not touch the process env.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for `Env`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Deserialises a connector's table, turning serde's error into one that names the key under
/// `path` (e.g. `connectors[0]`).
pub fn parse_table<T: DeserializeOwned>(path: &str, value: toml::Value) -> ConfigResult<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let key = if inner == "." || inner.is_empty() {
            path.to_string()
        } else {
            format!("{path}.{inner}")
        };
        ConfigError::new(key, e.into_inner().to_string())
    })
}

/// Resolves a secret given either directly (`key`) or by environment variable (`key_env`).
/// Exactly one of the two must be set, and the variable must exist and be non-empty.
pub fn resolve_secret(
    path: &str,
    key: &str,
    direct: Option<Secret>,
    env_name: Option<&str>,
    env: Env<'_>,
) -> ConfigResult<Secret> {
    match (direct, env_name) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            format!("{path}.{key}"),
            format!("set either `{key}` or `{key}_env`, not both"),
        )),
        (Some(s), None) if s.expose().is_empty() => Err(ConfigError::new(
            format!("{path}.{key}"),
            "must not be empty",
        )),
        (Some(s), None) => Ok(s),
        (None, Some(var)) => match env(var) {
            Some(v) if !v.is_empty() => Ok(Secret(v)),
            _ => Err(ConfigError::new(
                format!("{path}.{key}_env"),
                format!("environment variable {var} is not set or empty"),
            )),
        },
        (None, None) => Err(ConfigError::new(
            format!("{path}.{key}"),
            format!("missing (set `{key}` or `{key}_env`)"),
        )),
    }
}

/// Like `resolve_secret` for a secret that may be absent altogether.
pub fn resolve_optional_secret(
    path: &str,
    key: &str,
    direct: Option<Secret>,
    env_name: Option<&str>,
    env: Env<'_>,
) -> ConfigResult<Option<Secret>> {
    if direct.is_none() && env_name.is_none() {
        return Ok(None);
    }
    resolve_secret(path, key, direct, env_name, env).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        name: String,
        #[serde(default)]
        nested: Option<Nested>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        port: u16,
    }

    #[test]
    fn parse_table_names_the_nested_key_that_is_wrong() {
        let v: toml::Value = toml::from_str("name = 'x'\n[nested]\nport = 'eighty'").unwrap();
        let err = parse_table::<Demo>("connectors[3]", v).unwrap_err();
        assert_eq!(err.key, "connectors[3].nested.port");
        assert!(err.problem.contains("invalid type"), "{}", err.problem);
    }

    #[test]
    fn parse_table_reports_unknown_keys() {
        let v: toml::Value = toml::from_str("name = 'x'\nnmae = 'y'").unwrap();
        let err = parse_table::<Demo>("connectors[0]", v).unwrap_err();
        assert!(err.to_string().contains("unknown field `nmae`"), "{err}");
    }

    #[test]
    fn secret_from_env_and_errors_name_the_key() {
        let env = |k: &str| (k == "SET").then(|| "s3cret".to_string());
        let s = resolve_secret("c[0]", "secret", None, Some("SET"), &env).unwrap();
        assert_eq!(s.expose(), "s3cret");
        let e = resolve_secret("c[0]", "secret", None, Some("UNSET"), &env).unwrap_err();
        assert_eq!(e.key, "c[0].secret_env");
        let e = resolve_secret("c[0]", "secret", None, None, &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "c[0].secret: missing (set `secret` or `secret_env`)"
        );
        let both = resolve_secret("c[0]", "secret", Some(Secret::new("a")), Some("SET"), &env);
        assert!(both.is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "[redacted]");
    }
}
