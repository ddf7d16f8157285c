use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_secret};
use switchboard_core::signature::{Algorithm, Encoding, HmacScheme};
use switchboard_core::{ConfigError, ConfigResult, Env, Secret};

/// `[[connectors]]` table of `kind = "generic"`, as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericConfig {
    pub id: String,
    pub kind: String,
    /// HMAC key shared with the sender.
    pub secret: Option<Secret>,
    pub secret_env: Option<String>,
    /// Header carrying the signature.
    #[serde(default = "default_header")]
    pub signature_header: String,
    #[serde(default = "default_encoding")]
    pub signature_encoding: Encoding,
    #[serde(default = "default_algorithm")]
    pub signature_algorithm: Algorithm,
    /// Text before the encoded MAC, e.g. `sha256=`.
    pub signature_prefix: Option<String>,
    /// JSON Pointer to the sender's event id (dedupe key).
    pub event_id: Option<String>,
    /// Header carrying the sender's event id, when it is not in the body.
    pub event_id_header: Option<String>,
    /// JSON Pointer to the event type, stored with the raw event.
    pub event_kind: Option<String>,
    /// The channel name agents see; defaults to `generic`.
    #[serde(default = "default_channel")]
    pub channel: String,
    #[serde(default)]
    pub mapping: Mapping,
    /// Where agents' replies are POSTed (signed JSON); without it the connector cannot reply.
    pub reply_url: Option<String>,
    /// Milliseconds before a reply POST counts as failed (and is retried).
    #[serde(default = "default_reply_timeout")]
    pub reply_timeout_ms: u64,
    /// JSON Pointer to the receiver's id for a sent reply, used to match status callbacks.
    #[serde(default = "default_reply_id")]
    pub reply_id: String,
}

fn default_reply_timeout() -> u64 {
    10_000
}
fn default_reply_id() -> String {
    "/id".into()
}

fn default_header() -> String {
    "x-switchboard-signature".into()
}
fn default_encoding() -> Encoding {
    Encoding::Hex
}
fn default_algorithm() -> Algorithm {
    Algorithm::Sha256
}
fn default_channel() -> String {
    "generic".into()
}

/// JSON Pointers (RFC 6901) into the payload. Every one is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub text: Option<String>,
    pub thread: Option<String>,
    pub occurred_at: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub customer_name: Option<String>,
    pub customer_external_id: Option<String>,
    pub message_id: Option<String>,
    /// `inbound` (default) or `outbound`, e.g. for messages an agent sent elsewhere.
    pub direction: Option<String>,
    /// A delivery status (`sent`, `delivered`, `read`, `failed`) for one of our replies,
    /// identified by `message_id`: a status callback instead of a message.
    pub status: Option<String>,
    pub order_id: Option<String>,
    pub order_total: Option<String>,
    pub order_currency: Option<String>,
    pub order_status: Option<String>,
    /// The order's last-modified time (RFC 3339 or unix seconds): its version, so an older
    /// copy never overwrites a newer one.
    pub order_updated_at: Option<String>,
    /// A customer profile's weak attributes (merge suggestions only, never identities).
    /// With `customer_external_id` mapped and any of these present, the event also carries
    /// a profile document of that customer.
    pub customer_address_line1: Option<String>,
    pub customer_address_line2: Option<String>,
    pub customer_city: Option<String>,
    pub customer_region: Option<String>,
    pub customer_postal_code: Option<String>,
    pub customer_country: Option<String>,
    /// `YYYY-MM-DD`, `YYYYMMDD` or anything with the digits in that order.
    pub customer_birth_date: Option<String>,
}

impl Mapping {
    fn pointers(&self) -> [(&'static str, &Option<String>); 22] {
        [
            ("text", &self.text),
            ("thread", &self.thread),
            ("occurred_at", &self.occurred_at),
            ("customer_email", &self.customer_email),
            ("customer_phone", &self.customer_phone),
            ("customer_name", &self.customer_name),
            ("customer_external_id", &self.customer_external_id),
            ("message_id", &self.message_id),
            ("direction", &self.direction),
            ("status", &self.status),
            ("order_id", &self.order_id),
            ("order_total", &self.order_total),
            ("order_currency", &self.order_currency),
            ("order_status", &self.order_status),
            ("order_updated_at", &self.order_updated_at),
            ("customer_address_line1", &self.customer_address_line1),
            ("customer_address_line2", &self.customer_address_line2),
            ("customer_city", &self.customer_city),
            ("customer_region", &self.customer_region),
            ("customer_postal_code", &self.customer_postal_code),
            ("customer_country", &self.customer_country),
            ("customer_birth_date", &self.customer_birth_date),
        ]
    }
}

/// The validated settings the running connector uses.
#[derive(Debug)]
pub struct Settings {
    pub connector_id: String,
    pub secret: Secret,
    /// Lower-cased header name.
    pub signature_header: String,
    pub scheme: HmacScheme,
    pub event_id: Option<String>,
    pub event_id_header: Option<String>,
    pub event_kind: Option<String>,
    pub channel: String,
    pub mapping: Mapping,
    pub reply_url: Option<String>,
    pub reply_timeout_ms: u64,
    pub reply_id: String,
}

fn check_pointer(key: String, p: &str) -> ConfigResult<()> {
    if p.is_empty() || p.starts_with('/') {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("`{p}` is not a JSON Pointer (RFC 6901): it must be empty or start with `/`"),
        ))
    }
}

fn check_header(key: String, h: &str) -> ConfigResult<String> {
    let lower = h.trim().to_ascii_lowercase();
    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() || lower.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("`{h}` is not a valid HTTP header name"),
        ));
    }
    Ok(lower)
}

impl Settings {
    pub fn from_table(
        id: &str,
        path: &str,
        table: toml::Value,
        env: Env<'_>,
    ) -> ConfigResult<Self> {
        let c: GenericConfig = parse_table(path, table)?;
        let secret = resolve_secret(path, "secret", c.secret, c.secret_env.as_deref(), env)?;
        let signature_header =
            check_header(format!("{path}.signature_header"), &c.signature_header)?;
        let event_id_header = c
            .event_id_header
            .as_deref()
            .map(|h| check_header(format!("{path}.event_id_header"), h))
            .transpose()?;
        if c.event_id.is_some() && event_id_header.is_some() {
            return Err(ConfigError::new(
                format!("{path}.event_id"),
                "set either `event_id` (a JSON Pointer) or `event_id_header`, not both",
            ));
        }
        if let Some(p) = &c.event_id {
            check_pointer(format!("{path}.event_id"), p)?;
        }
        if let Some(p) = &c.event_kind {
            check_pointer(format!("{path}.event_kind"), p)?;
        }
        for (name, p) in c.mapping.pointers() {
            if let Some(p) = p {
                check_pointer(format!("{path}.mapping.{name}"), p)?;
            }
        }
        if c.channel.trim().is_empty() {
            return Err(ConfigError::new(
                format!("{path}.channel"),
                "must not be empty",
            ));
        }
        if let Some(u) = &c.reply_url {
            let ok = (u.starts_with("http://") || u.starts_with("https://"))
                && u.parse::<http::Uri>().is_ok_and(|uri| uri.host().is_some());
            if !ok {
                return Err(ConfigError::new(
                    format!("{path}.reply_url"),
                    format!("`{u}` is not an http(s) URL"),
                ));
            }
        }
        if c.reply_timeout_ms == 0 || c.reply_timeout_ms > 120_000 {
            return Err(ConfigError::new(
                format!("{path}.reply_timeout_ms"),
                "must be between 1 and 120000",
            ));
        }
        check_pointer(format!("{path}.reply_id"), &c.reply_id)?;
        Ok(Settings {
            reply_url: c.reply_url,
            reply_timeout_ms: c.reply_timeout_ms,
            reply_id: c.reply_id,
            connector_id: id.to_string(),
            secret,
            signature_header,
            scheme: HmacScheme {
                algorithm: c.signature_algorithm,
                encoding: c.signature_encoding,
                prefix: c.signature_prefix.filter(|p| !p.is_empty()),
            },
            event_id: c.event_id,
            event_id_header,
            event_kind: c.event_kind,
            channel: c.channel,
            mapping: c.mapping,
        })
    }
}
