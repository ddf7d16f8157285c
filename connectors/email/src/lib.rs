//! Email connectors. `kind = "email"` is one mailbox: an IMAP poller brings mail in, SMTP sends
//! the replies. The inbound-parse kinds (`mailgun`, `postmark`, `sendgrid`) receive mail by
//! webhook and may send their replies through an `email` connector's SMTP (`reply_via`). All of
//! them share one MIME parser (`mime`) and one normaliser (`normalize`), so threading and
//! identities work the same whichever way a mail arrived.

pub mod config;
pub mod imap;
pub mod inbound;
pub mod mailgun;
pub mod mime;
pub mod normalize;
pub mod poll;
pub mod postmark;
pub mod send;
pub mod sendgrid;

use std::sync::Arc;

use switchboard_core::{
    AttachmentContent, ConfigError, ConfigResult, Connector, Env, Normalizer, Outbound, Poller,
    StoredEvent,
};

/// The kinds this crate builds, for the hub's error messages.
pub const KINDS: &[&str] = &["email", "mailgun", "postmark", "sendgrid"];

/// A built `email` connector.
pub struct Email {
    normalizer: normalize::EmailNormalizer,
    poller: poll::ImapPoller,
    outbound: Option<Arc<send::SmtpSender>>,
}

impl Connector for Email {
    fn kind(&self) -> &'static str {
        "email"
    }
    fn normalizer(&self) -> &dyn Normalizer {
        &self.normalizer
    }
    fn poller(&self) -> Option<&dyn Poller> {
        Some(&self.poller)
    }
    fn outbound(&self) -> Option<&dyn Outbound> {
        self.outbound.as_deref().map(|o| o as &dyn Outbound)
    }
    /// The raw event is the message's exact RFC 5322 bytes: the `index`-th MIME attachment
    /// (the order the normaliser lists them in) is decoded from it.
    fn attachment(&self, raw: &StoredEvent, index: usize) -> Option<AttachmentContent> {
        mime::attachment(&raw.payload, index)
    }
}

/// Builds the connector of `kind`, or `None` when this crate does not know the kind. A
/// `reply_via` key needs the other connectors' tables: the hub calls `build_in`.
pub fn build(
    kind: &str,
    id: &str,
    path: &str,
    table: toml::Value,
    env: Env<'_>,
) -> Option<ConfigResult<Box<dyn Connector>>> {
    build_in(kind, id, path, table, env, &[])
}

/// Like `build`, with every `[[connectors]]` table of the config, so that an inbound-parse
/// connector's `reply_via = "<id>"` can use that `email` connector's SMTP settings.
pub fn build_in(
    kind: &str,
    id: &str,
    path: &str,
    table: toml::Value,
    env: Env<'_>,
    all: &[toml::Value],
) -> Option<ConfigResult<Box<dyn Connector>>> {
    let built: ConfigResult<Box<dyn Connector>> = match kind {
        "email" => build_email(id, path, table, env).map(|c| Box::new(c) as Box<dyn Connector>),
        "mailgun" => {
            build_mailgun(id, path, table, env, all).map(|c| Box::new(c) as Box<dyn Connector>)
        }
        "postmark" => {
            build_postmark(id, path, table, env, all).map(|c| Box::new(c) as Box<dyn Connector>)
        }
        "sendgrid" => {
            build_sendgrid(id, path, table, env, all).map(|c| Box::new(c) as Box<dyn Connector>)
        }
        _ => return None,
    };
    Some(built)
}

fn build_email(id: &str, path: &str, table: toml::Value, env: Env<'_>) -> ConfigResult<Email> {
    let s = config::EmailSettings::from_table(id, path, table, env)?;
    Ok(Email {
        normalizer: normalize::EmailNormalizer { s: s.norm.clone() },
        poller: poll::ImapPoller::new(s.imap.clone()),
        outbound: smtp_sender(path, s.smtp)?,
    })
}

fn smtp_sender(
    path: &str,
    s: Option<config::SmtpSettings>,
) -> ConfigResult<Option<Arc<send::SmtpSender>>> {
    s.map(|s| {
        send::SmtpSender::new(s)
            .map(Arc::new)
            .map_err(|e| ConfigError::new(format!("{path}.smtp_host"), e))
    })
    .transpose()
}

/// The SMTP sender of the `email` connector named by `reply_via`.
fn reply_via(
    path: &str,
    via: Option<&str>,
    env: Env<'_>,
    all: &[toml::Value],
) -> ConfigResult<Option<Arc<send::SmtpSender>>> {
    let Some(via) = via else { return Ok(None) };
    let key = format!("{path}.reply_via");
    let found = all
        .iter()
        .enumerate()
        .find(|(_, t)| t.get("id").and_then(|v| v.as_str()) == Some(via));
    let Some((j, t)) = found else {
        return Err(ConfigError::new(
            key,
            format!("no connector has id `{via}`"),
        ));
    };
    if t.get("kind").and_then(|v| v.as_str()) != Some("email") {
        return Err(ConfigError::new(
            key,
            format!("`{via}` is not a connector of kind `email`"),
        ));
    }
    let mut t = t.clone();
    if let Some(tt) = t.as_table_mut() {
        // Hub-level keys, not the email connector's own.
        tt.remove("send_rate_per_sec");
        tt.remove("send_burst");
    }
    let s = config::EmailSettings::from_table(via, &format!("connectors[{j}]"), t, env)?;
    if s.smtp.is_none() {
        return Err(ConfigError::new(
            key,
            format!("`{via}` has no `smtp_host`, so it cannot send"),
        ));
    }
    smtp_sender(&format!("connectors[{j}]"), s.smtp)
}

fn build_mailgun(
    id: &str,
    path: &str,
    table: toml::Value,
    env: Env<'_>,
    all: &[toml::Value],
) -> ConfigResult<inbound::InboundConnector> {
    let c: config::MailgunConfig = switchboard_core::config::parse_table(path, table)?;
    let key = switchboard_core::config::resolve_secret(
        path,
        "signing_key",
        c.signing_key,
        c.signing_key_env.as_deref(),
        env,
    )?;
    config::check_tolerance(path, c.tolerance_secs)?;
    let norm = config::common_settings(id, path, &c.own_addresses, c.subject_window_days, &[])?;
    Ok(inbound::InboundConnector {
        kind: "mailgun",
        webhook: Box::new(mailgun::MailgunWebhook::new(key, c.tolerance_secs)),
        normalizer: Box::new(mailgun::MailgunNormalizer { s: norm }),
        outbound: reply_via(path, c.reply_via.as_deref(), env, all)?,
    })
}

fn build_postmark(
    id: &str,
    path: &str,
    table: toml::Value,
    env: Env<'_>,
    all: &[toml::Value],
) -> ConfigResult<inbound::InboundConnector> {
    let c: config::PostmarkConfig = switchboard_core::config::parse_table(path, table)?;
    let auth = config::basic_auth(
        path,
        Some(c.basic_auth_user),
        c.basic_auth_password,
        c.basic_auth_password_env.as_deref(),
        env,
    )?
    .ok_or_else(|| ConfigError::new(format!("{path}.basic_auth_password"), "missing"))?;
    let norm = config::common_settings(id, path, &c.own_addresses, c.subject_window_days, &[])?;
    Ok(inbound::InboundConnector {
        kind: "postmark",
        webhook: Box::new(postmark::PostmarkWebhook { auth }),
        normalizer: Box::new(postmark::PostmarkNormalizer { s: norm }),
        outbound: reply_via(path, c.reply_via.as_deref(), env, all)?,
    })
}

fn build_sendgrid(
    id: &str,
    path: &str,
    table: toml::Value,
    env: Env<'_>,
    all: &[toml::Value],
) -> ConfigResult<inbound::InboundConnector> {
    let c: config::SendgridConfig = switchboard_core::config::parse_table(path, table)?;
    let auth = config::basic_auth(
        path,
        c.basic_auth_user,
        c.basic_auth_password,
        c.basic_auth_password_env.as_deref(),
        env,
    )?;
    let key = c
        .verification_key
        .as_deref()
        .map(|k| {
            sendgrid::parse_key(k)
                .map_err(|e| ConfigError::new(format!("{path}.verification_key"), e))
        })
        .transpose()?;
    if auth.is_none() && key.is_none() {
        return Err(ConfigError::new(
            format!("{path}.basic_auth_user"),
            "missing: set Basic auth (`basic_auth_user` + `basic_auth_password`) and/or `verification_key`, or anyone could post mail",
        ));
    }
    config::check_tolerance(path, c.tolerance_secs)?;
    let norm = config::common_settings(id, path, &c.own_addresses, c.subject_window_days, &[])?;
    Ok(inbound::InboundConnector {
        kind: "sendgrid",
        webhook: Box::new(sendgrid::SendgridWebhook {
            auth,
            key,
            tolerance: c.tolerance_secs,
        }),
        normalizer: Box::new(sendgrid::SendgridNormalizer { s: norm }),
        outbound: reply_via(path, c.reply_via.as_deref(), env, all)?,
    })
}
