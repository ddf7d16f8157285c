//! Replies by SMTP (`lettre`, tokio + rustls). The conversation key says whom to write and
//! what the thread is about; `In-Reply-To` is the customer's latest Message-ID (from the hub),
//! `References` the thread's root and that id. The Message-ID is ours, derived from the
//! outbound message id (the same on every retry), and returned as `provider_message_id`, so the
//! customer's answer threads back.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls as LettreTls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use switchboard_core::{ConnectorError, Outbound, OutboundMessage, Sent};

use crate::config::{SmtpSettings, Tls};
use crate::normalize::parse_thread_key;

/// One SMTP conversation (connect, TLS, auth, DATA) may take this long.
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct SmtpSender {
    s: SmtpSettings,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpSender {
    pub fn new(s: SmtpSettings) -> Result<Self, String> {
        let tls = match s.tls {
            Tls::None => LettreTls::None,
            Tls::Starttls => LettreTls::Required(
                TlsParameters::new(s.host.clone())
                    .map_err(|_| "cannot set up TLS for smtp_host".to_string())?,
            ),
            Tls::Tls => LettreTls::Wrapper(
                TlsParameters::new(s.host.clone())
                    .map_err(|_| "cannot set up TLS for smtp_host".to_string())?,
            ),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
            .port(s.port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if s.auth {
            b = b.credentials(Credentials::new(
                s.username.clone(),
                s.password.expose().to_string(),
            ));
        }
        Ok(SmtpSender {
            transport: b.build(),
            s,
        })
    }

    fn domain(&self) -> &str {
        self.s
            .from_address
            .rsplit('@')
            .next()
            .unwrap_or("localhost")
    }

    /// Builds the reply; also used by tests to look at the exact message.
    pub fn message(&self, msg: &OutboundMessage) -> Result<(Message, String), ConnectorError> {
        let target = parse_thread_key(&msg.thread_key).ok_or_else(|| {
            ConnectorError::Permanent("conversation key is not an email thread (mailto:…)".into())
        })?;
        let to: Mailbox = target.to.parse().map_err(|_| {
            ConnectorError::Permanent(format!("`{}` is not a deliverable address", target.to))
        })?;
        let from_addr = self
            .s
            .from_address
            .parse()
            .map_err(|_| ConnectorError::Permanent("from_address is not an address".into()))?;
        let from = Mailbox::new(self.s.from_name.clone(), from_addr);
        // Deterministic: a retry after a send whose answer was lost carries the same id.
        let safe_id: String = msg
            .id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
            .take(100)
            .collect();
        let message_id = format!("<sb.{safe_id}@{}>", self.domain());
        let subject = if target.subject.is_empty() {
            "Re: your message".to_string()
        } else {
            format!("Re: {}", target.subject)
        };
        let parent = msg
            .in_reply_to
            .as_deref()
            .and_then(crate::mime::norm_id)
            .or(target.root.clone());
        let mut refs: Vec<String> = Vec::new();
        for r in [target.root.clone(), parent.clone()].into_iter().flatten() {
            if !refs.contains(&r) {
                refs.push(r);
            }
        }
        let mut text = msg.text.clone();
        if !msg.attachment_urls.is_empty() {
            text.push_str("\n\n");
            for u in &msg.attachment_urls {
                text.push_str(u);
                text.push('\n');
            }
        }
        let mut b = Message::builder()
            .from(from.clone())
            .reply_to(from)
            .to(to)
            .subject(subject)
            .message_id(Some(message_id.clone()))
            .header(ContentType::TEXT_PLAIN);
        if let Some(p) = parent {
            b = b.in_reply_to(p);
        }
        if !refs.is_empty() {
            b = b.references(refs.join(" "));
        }
        let m = b
            .body(text)
            .map_err(|e| ConnectorError::Permanent(format!("cannot build the email: {e}")))?;
        Ok((m, message_id))
    }
}

/// 4xx and connection trouble → Transient; 535/530 (auth) → Unauthorized; other 5xx →
/// Permanent with the server's text.
pub fn smtp_error(e: &lettre::transport::smtp::Error) -> ConnectorError {
    let text: String = e.to_string().chars().take(500).collect();
    let code = e.status().map(|c| c.to_string());
    if e.is_permanent() {
        if matches!(code.as_deref(), Some("535") | Some("530") | Some("534")) {
            return ConnectorError::Unauthorized(format!("SMTP: {text}"));
        }
        return ConnectorError::Permanent(format!("SMTP: {text}"));
    }
    if e.is_transient() {
        return ConnectorError::Transient(format!("SMTP: {text}"));
    }
    if e.is_timeout() {
        return ConnectorError::Transient("SMTP: timed out".into());
    }
    if e.is_client() {
        return ConnectorError::Permanent(format!("SMTP: {text}"));
    }
    // Connection refused or reset, TLS failures, the server closing on us.
    ConnectorError::Transient(format!("SMTP: {text}"))
}

#[async_trait]
impl Outbound for SmtpSender {
    async fn send(&self, msg: &OutboundMessage) -> Result<Sent, ConnectorError> {
        let (m, id) = self.message(msg)?;
        match tokio::time::timeout(
            SMTP_TIMEOUT + Duration::from_secs(5),
            self.transport.send(m),
        )
        .await
        {
            Ok(Ok(_)) => Ok(Sent {
                provider_message_id: Some(id),
            }),
            Ok(Err(e)) => Err(smtp_error(&e)),
            Err(_) => Err(ConnectorError::Transient("SMTP: timed out".into())),
        }
    }
}
