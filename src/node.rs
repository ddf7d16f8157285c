//! One hub node: its id (who holds a poll lease) and its roles (what it runs). Several nodes
//! may serve one PostgreSQL database; each runs the roles it is given.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A node's id: random per process, so a restarted node never mistakes an old lease for its
/// own; the host name and pid are there for people reading logs and `GET /api/v1/connectors`.
pub fn new_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    let suffix: u32 = rand::random();
    format!("{host}-{}-{suffix:08x}", std::process::id())
}

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// `/api/v1` (the inbox API, SSE events, OpenAPI document).
    Api,
    /// `/webhooks/{connector_id}` and the group-commit writers behind it.
    Ingest,
    /// The pipeline worker (normalise, identity, timeline) and the merge suggester.
    Pipeline,
    /// The reply sender and the outgoing-webhook dispatcher: everything that delivers to
    /// the outside world, with the event-log retention pruning.
    Sender,
    /// The poller runner (each connector under a poll lease).
    Poller,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Api,
        Role::Ingest,
        Role::Pipeline,
        Role::Sender,
        Role::Poller,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Ingest => "ingest",
            Role::Pipeline => "pipeline",
            Role::Sender => "sender",
            Role::Poller => "poller",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A set of roles; by default all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles(u8);

impl Default for Roles {
    fn default() -> Self {
        Roles::all()
    }
}

impl Roles {
    pub fn all() -> Roles {
        Roles(0b1_1111)
    }

    pub fn has(self, r: Role) -> bool {
        self.0 & (1 << r as u8) != 0
    }

    /// Parses `api,ingest,…` (commas and/or spaces); `all` is every role. An unknown or
    /// empty list is an error that says which roles exist.
    pub fn parse(s: &str) -> Result<Roles, String> {
        Self::from_names(s.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()))
    }

    fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Roles, String> {
        let mut bits = 0u8;
        for name in names {
            let name = name.trim().to_ascii_lowercase();
            if name == "all" {
                bits = Roles::all().0;
                continue;
            }
            let r = Role::parse(&name).ok_or_else(|| {
                format!("unknown role `{name}`; roles are api, ingest, pipeline, sender, poller (or all)")
            })?;
            bits |= 1 << r as u8;
        }
        if bits == 0 {
            return Err(
                "no role given; roles are api, ingest, pipeline, sender, poller (or all)".into(),
            );
        }
        Ok(Roles(bits))
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| self.has(*r))
            .map(Role::as_str)
            .collect();
        f.write_str(&names.join(","))
    }
}

impl std::str::FromStr for Roles {
    type Err = String;
    fn from_str(s: &str) -> Result<Roles, String> {
        Roles::parse(s)
    }
}

/// `server.roles` is a list (`["api", "ingest"]`) or, as an environment override, a
/// comma-separated string (`SWITCHBOARD_SERVER__ROLES=api,ingest`).
impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Roles, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<String>),
            Text(String),
        }
        let parsed = match Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a list of roles or a comma-separated string")
        })? {
            Form::List(v) => Roles::from_names(v.iter().map(String::as_str)),
            Form::Text(s) => Roles::parse(&s),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_lists_all_and_reject_unknown_names() {
        let r = Roles::parse("api, ingest").unwrap();
        assert!(r.has(Role::Api) && r.has(Role::Ingest) && !r.has(Role::Poller));
        assert_eq!(r.to_string(), "api,ingest");
        assert_eq!(Roles::parse("all").unwrap(), Roles::all());
        assert_eq!(
            Roles::all().to_string(),
            "api,ingest,pipeline,sender,poller"
        );
        assert!(Roles::parse("api,cook").unwrap_err().contains("`cook`"));
        assert!(Roles::parse(" , ").is_err());
    }

    #[test]
    fn node_ids_differ_per_call_and_name_the_pid() {
        let (a, b) = (new_node_id(), new_node_id());
        assert_ne!(a, b);
        assert!(a.contains(&std::process::id().to_string()), "{a}");
    }
}
