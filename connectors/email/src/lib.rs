//! Email connectors. `kind = "email"` is one mailbox: an IMAP poller brings mail in, SMTP sends
//! the replies. The inbound-parse kinds (`mailgun`, `postmark`, `sendgrid`) receive mail by
//! webhook and may send their replies through an `email` connector's SMTP (`reply_via`). All of
//! them share one MIME parser (`mime`) and one normaliser (`normalize`), so threading and
//! identities work the same whichever way a mail arrived.

pub mod config;
pub mod imap;
pub mod mime;
pub mod normalize;
pub mod poll;
pub mod send;

use std::sync::Arc;

use switchboard_core::{ConfigError, ConfigResult, Connector, Env, Normalizer, Outbound, Poller};

/// The kinds this crate builds, for the hub's error messages.
pub const KINDS: &[&str] = &["email"];

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
        "email" => {
            Some(build_email(id, path, table, env).map(|c| Box::new(c) as Box<dyn Connector>))
        }
        _ => None,
    }
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
