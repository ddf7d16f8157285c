//! Config tables of the email kinds. Every table is `deny_unknown_fields`, secrets may be given
//! as `<key>_env`, and every error names the exact key.

use serde::Deserialize;
use switchboard_core::config::{parse_table, resolve_optional_secret, resolve_secret};
use switchboard_core::{ConfigError, ConfigResult, Env, Secret};

/// How a connection to the IMAP or SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// Plain text (only for a server on the same host or a test).
    None,
    /// Plain connect, then upgrade with STARTTLS (refused if the server does not offer it).
    Starttls,
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
}

/// `[[connectors]]` table of `kind = "email"`: one mailbox.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub id: String,
    pub kind: String,
    pub imap_host: String,
    pub imap_port: Option<u16>,
    #[serde(default = "default_tls")]
    pub imap_tls: Tls,
    pub username: String,
    pub password: Option<Secret>,
    pub password_env: Option<String>,
    #[serde(default = "default_mailboxes")]
    pub mailboxes: Vec<String>,
    /// The first sync imports mail from this many days back (IMAP `SEARCH SINCE`); 0 = all.
    #[serde(default = "default_backfill")]
    pub backfill_days: u32,
    /// Without `smtp_host` the connector only receives.
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    #[serde(default = "default_smtp_tls")]
    pub smtp_tls: Tls,
    /// Defaults to `username`.
    pub smtp_username: Option<String>,
    /// Defaults to `password`.
    pub smtp_password: Option<Secret>,
    pub smtp_password_env: Option<String>,
    /// Log in to the SMTP server (AUTH PLAIN/LOGIN); `false` for a relay that takes mail
    /// from this host without it.
    #[serde(default = "default_true")]
    pub smtp_auth: bool,
    /// The address replies are sent from; defaults to `username` when that is an address.
    pub from_address: Option<String>,
    pub from_name: Option<String>,
    /// Larger messages are imported with their headers only, flagged as truncated.
    #[serde(default = "default_max_bytes")]
    pub max_message_bytes: u64,
    /// Messages fetched per poll (a page); more pages follow at once.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// Seconds between polls when the server does not offer IDLE (or `idle = false`).
    #[serde(default = "default_interval")]
    pub poll_interval_secs: u64,
    /// Wait for new mail with IMAP IDLE when offered.
    #[serde(default = "default_true")]
    pub idle: bool,
    /// How long one IDLE waits before the poll returns an empty page (bounded, max 1500).
    #[serde(default = "default_idle_secs")]
    pub idle_timeout_secs: u64,
    /// More addresses of ours (aliases); mail from them is ours, never a customer identity.
    #[serde(default)]
    pub own_addresses: Vec<String>,
    /// A message with the same base subject from the same customer joins the conversation
    /// within this many days of its last message (0 disables subject threading).
    #[serde(default = "default_window")]
    pub subject_window_days: u32,
}

fn default_tls() -> Tls {
    Tls::Tls
}
fn default_smtp_tls() -> Tls {
    Tls::Starttls
}
fn default_mailboxes() -> Vec<String> {
    vec!["INBOX".into()]
}
fn default_backfill() -> u32 {
    30
}
fn default_max_bytes() -> u64 {
    25 * 1024 * 1024
}
fn default_batch() -> u32 {
    50
}
fn default_interval() -> u64 {
    60
}
fn default_true() -> bool {
    true
}
fn default_idle_secs() -> u64 {
    25
}
fn default_window() -> u32 {
    14
}

/// Validated settings shared by every email kind's normaliser.
#[derive(Debug, Clone)]
pub struct NormalizeSettings {
    pub connector_id: String,
    /// Lower-cased addresses of ours.
    pub own_addresses: Vec<String>,
    /// 0 = no subject threading.
    pub subject_window_secs: u64,
}

#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: String,
    pub password: Secret,
    pub mailboxes: Vec<String>,
    pub backfill_days: u32,
    pub max_message_bytes: u64,
    pub batch_size: u32,
    pub poll_interval_secs: u64,
    pub idle: bool,
    pub idle_timeout_secs: u64,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: String,
    pub password: Secret,
    pub auth: bool,
    pub from_address: String,
    pub from_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub norm: NormalizeSettings,
    pub imap: ImapSettings,
    pub smtp: Option<SmtpSettings>,
}

/// A plausible `local@domain` address (not a full RFC 5322 parser: config only).
pub fn looks_like_address(s: &str) -> bool {
    match s.split_once('@') {
        Some((l, d)) => {
            !l.is_empty()
                && d.contains('.')
                && !d.starts_with('.')
                && !d.ends_with('.')
                && !s.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
                && !d.contains('@')
        }
        None => false,
    }
}

fn check_host(key: String, h: &str) -> ConfigResult<()> {
    if h.trim().is_empty() || h.contains(['/', ' ', '@']) {
        return Err(ConfigError::new(key, format!("`{h}` is not a host name")));
    }
    Ok(())
}

pub fn common_settings(
    id: &str,
    path: &str,
    own_addresses: &[String],
    subject_window_days: u32,
    extra: &[&str],
) -> ConfigResult<NormalizeSettings> {
    let mut own: Vec<String> = Vec::new();
    for (i, a) in own_addresses.iter().enumerate() {
        if !looks_like_address(a) {
            return Err(ConfigError::new(
                format!("{path}.own_addresses[{i}]"),
                format!("`{a}` is not an email address"),
            ));
        }
        own.push(a.to_lowercase());
    }
    for a in extra {
        if looks_like_address(a) {
            own.push(a.to_lowercase());
        }
    }
    if subject_window_days > 3650 {
        return Err(ConfigError::new(
            format!("{path}.subject_window_days"),
            "must be at most 3650",
        ));
    }
    Ok(NormalizeSettings {
        connector_id: id.to_string(),
        own_addresses: own,
        subject_window_secs: u64::from(subject_window_days) * 86_400,
    })
}

impl EmailSettings {
    pub fn from_table(
        id: &str,
        path: &str,
        table: toml::Value,
        env: Env<'_>,
    ) -> ConfigResult<Self> {
        let c: EmailConfig = parse_table(path, table)?;
        check_host(format!("{path}.imap_host"), &c.imap_host)?;
        if c.username.trim().is_empty() {
            return Err(ConfigError::new(
                format!("{path}.username"),
                "must not be empty",
            ));
        }
        let password =
            resolve_secret(path, "password", c.password, c.password_env.as_deref(), env)?;
        if c.mailboxes.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.mailboxes"),
                "must name at least one mailbox",
            ));
        }
        for (i, m) in c.mailboxes.iter().enumerate() {
            if m.trim().is_empty() || m.len() > 200 || m.contains(['\r', '\n', '"', '\\']) {
                return Err(ConfigError::new(
                    format!("{path}.mailboxes[{i}]"),
                    format!("`{m}` is not a usable mailbox name"),
                ));
            }
        }
        if c.backfill_days > 36_500 {
            return Err(ConfigError::new(
                format!("{path}.backfill_days"),
                "must be at most 36500",
            ));
        }
        if c.max_message_bytes < 1024 {
            return Err(ConfigError::new(
                format!("{path}.max_message_bytes"),
                "must be at least 1024",
            ));
        }
        if c.batch_size == 0 || c.batch_size > 1000 {
            return Err(ConfigError::new(
                format!("{path}.batch_size"),
                "must be between 1 and 1000",
            ));
        }
        if c.poll_interval_secs == 0 || c.poll_interval_secs > 86_400 {
            return Err(ConfigError::new(
                format!("{path}.poll_interval_secs"),
                "must be between 1 and 86400",
            ));
        }
        if c.idle_timeout_secs == 0 || c.idle_timeout_secs > 1500 {
            return Err(ConfigError::new(
                format!("{path}.idle_timeout_secs"),
                "must be between 1 and 1500 (servers drop idle clients after 30 minutes)",
            ));
        }
        let imap_port = c.imap_port.unwrap_or(match c.imap_tls {
            Tls::Tls => 993,
            _ => 143,
        });
        let from_address = match (&c.from_address, looks_like_address(&c.username)) {
            (Some(a), _) if looks_like_address(a) => Some(a.clone()),
            (Some(a), _) => {
                return Err(ConfigError::new(
                    format!("{path}.from_address"),
                    format!("`{a}` is not an email address"),
                ))
            }
            (None, true) => Some(c.username.clone()),
            (None, false) => None,
        };
        let smtp = match &c.smtp_host {
            None => {
                for (key, set) in [
                    ("smtp_port", c.smtp_port.is_some()),
                    ("smtp_username", c.smtp_username.is_some()),
                    (
                        "smtp_password",
                        c.smtp_password.is_some() || c.smtp_password_env.is_some(),
                    ),
                ] {
                    if set {
                        return Err(ConfigError::new(
                            format!("{path}.{key}"),
                            "is set but `smtp_host` is not (without it the connector cannot send)",
                        ));
                    }
                }
                None
            }
            Some(h) => {
                check_host(format!("{path}.smtp_host"), h)?;
                let from_address = from_address.clone().ok_or_else(|| {
                    ConfigError::new(
                        format!("{path}.from_address"),
                        "missing: replies need a From address and `username` is not one",
                    )
                })?;
                let pw = resolve_optional_secret(
                    path,
                    "smtp_password",
                    c.smtp_password,
                    c.smtp_password_env.as_deref(),
                    env,
                )?
                .unwrap_or_else(|| password.clone());
                Some(SmtpSettings {
                    host: h.clone(),
                    port: c.smtp_port.unwrap_or(match c.smtp_tls {
                        Tls::Tls => 465,
                        Tls::Starttls => 587,
                        Tls::None => 25,
                    }),
                    tls: c.smtp_tls,
                    username: c
                        .smtp_username
                        .clone()
                        .unwrap_or_else(|| c.username.clone()),
                    password: pw,
                    auth: c.smtp_auth,
                    from_address,
                    from_name: c.from_name.clone().filter(|n| !n.trim().is_empty()),
                })
            }
        };
        let mut extra: Vec<&str> = vec![c.username.as_str()];
        if let Some(a) = &from_address {
            extra.push(a.as_str());
        }
        let norm = common_settings(id, path, &c.own_addresses, c.subject_window_days, &extra)?;
        Ok(EmailSettings {
            norm,
            imap: ImapSettings {
                host: c.imap_host,
                port: imap_port,
                tls: c.imap_tls,
                username: c.username,
                password,
                mailboxes: c.mailboxes,
                backfill_days: c.backfill_days,
                max_message_bytes: c.max_message_bytes,
                batch_size: c.batch_size,
                poll_interval_secs: c.poll_interval_secs,
                idle: c.idle,
                idle_timeout_secs: c.idle_timeout_secs,
            },
            smtp,
        })
    }
}

/// `kind = "mailgun"`: Mailgun inbound routes (`forward()` to `/webhooks/{id}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailgunConfig {
    pub id: String,
    pub kind: String,
    pub signing_key: Option<Secret>,
    pub signing_key_env: Option<String>,
    /// Seconds a signed timestamp stays valid (Mailgun's SDK uses 300).
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: i64,
    pub reply_via: Option<String>,
    /// More addresses of ours (aliases); mail from them is ours, never a customer identity.
    #[serde(default)]
    pub own_addresses: Vec<String>,
    /// A message with the same base subject from the same customer joins the conversation
    /// within this many days of its last message (0 disables subject threading).
    #[serde(default = "default_window")]
    pub subject_window_days: u32,
}

fn default_tolerance() -> i64 {
    300
}

/// `kind = "postmark"`: Postmark inbound webhook, protected by HTTP Basic auth.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostmarkConfig {
    pub id: String,
    pub kind: String,
    pub basic_auth_user: String,
    pub basic_auth_password: Option<Secret>,
    pub basic_auth_password_env: Option<String>,
    pub reply_via: Option<String>,
    /// More addresses of ours (aliases); mail from them is ours, never a customer identity.
    #[serde(default)]
    pub own_addresses: Vec<String>,
    /// A message with the same base subject from the same customer joins the conversation
    /// within this many days of its last message (0 disables subject threading).
    #[serde(default = "default_window")]
    pub subject_window_days: u32,
}

/// `kind = "sendgrid"`: SendGrid Inbound Parse, Basic auth and/or ECDSA signature.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridConfig {
    pub id: String,
    pub kind: String,
    pub basic_auth_user: Option<String>,
    pub basic_auth_password: Option<Secret>,
    pub basic_auth_password_env: Option<String>,
    /// The security policy's public key: base64 DER (SPKI) or PEM.
    pub verification_key: Option<String>,
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: i64,
    pub reply_via: Option<String>,
    /// More addresses of ours (aliases); mail from them is ours, never a customer identity.
    #[serde(default)]
    pub own_addresses: Vec<String>,
    /// A message with the same base subject from the same customer joins the conversation
    /// within this many days of its last message (0 disables subject threading).
    #[serde(default = "default_window")]
    pub subject_window_days: u32,
}

#[derive(Debug, Clone)]
pub struct BasicAuth {
    pub user: String,
    pub password: Secret,
}

pub fn check_tolerance(path: &str, t: i64) -> ConfigResult<()> {
    if !(1..=86_400).contains(&t) {
        return Err(ConfigError::new(
            format!("{path}.tolerance_secs"),
            "must be between 1 and 86400",
        ));
    }
    Ok(())
}

pub fn basic_auth(
    path: &str,
    user: Option<String>,
    pw: Option<Secret>,
    pw_env: Option<&str>,
    env: Env<'_>,
) -> ConfigResult<Option<BasicAuth>> {
    let pw = resolve_optional_secret(path, "basic_auth_password", pw, pw_env, env)?;
    match (user, pw) {
        (None, None) => Ok(None),
        (Some(u), Some(p)) if !u.is_empty() && !u.contains(':') => Ok(Some(BasicAuth {
            user: u,
            password: p,
        })),
        (Some(_), Some(_)) => Err(ConfigError::new(
            format!("{path}.basic_auth_user"),
            "must be non-empty and contain no `:`",
        )),
        (Some(_), None) => Err(ConfigError::new(
            format!("{path}.basic_auth_password"),
            "missing (set `basic_auth_password` or `basic_auth_password_env`)",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            format!("{path}.basic_auth_user"),
            "missing",
        )),
    }
}
