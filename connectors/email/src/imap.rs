//! IMAP connections with `async-imap` on tokio: plain, STARTTLS or TLS (rustls with the
//! Mozilla roots), every network step under a timeout, errors mapped to `ConnectorError`
//! (login refused → Unauthorized; anything else → Transient, the runner reconnects).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use switchboard_core::ConnectorError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use crate::config::{ImapSettings, Tls};

/// Any byte stream a session runs on (TCP, or TLS over TCP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Io for T {}

pub type Session = async_imap::Session<Box<dyn Io>>;

/// How long one network step (connect, login, select, one fetch) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one step under `STEP_TIMEOUT`, mapping its error; `what` names the step.
pub async fn step<T, E: Into<ImapFailure>>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ConnectorError> {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into().into_connector(what)),
        Err(_) => Err(ConnectorError::Transient(format!("IMAP {what}: timed out"))),
    }
}

/// An IMAP or I/O failure, turned into a message without secrets (server text only).
pub struct ImapFailure(String, bool);

impl ImapFailure {
    pub(crate) fn into_connector(self, what: &str) -> ConnectorError {
        let msg: String = format!("IMAP {what}: {}", self.0)
            .chars()
            .take(300)
            .collect();
        if self.1 {
            ConnectorError::Unauthorized(msg)
        } else {
            ConnectorError::Transient(msg)
        }
    }
}

impl From<async_imap::error::Error> for ImapFailure {
    fn from(e: async_imap::error::Error) -> Self {
        use async_imap::error::Error as E;
        match e {
            E::No(m) => ImapFailure(format!("server said NO: {m}"), false),
            E::Bad(m) => ImapFailure(format!("server said BAD: {m}"), false),
            E::ConnectionLost => ImapFailure("connection lost".into(), false),
            E::Io(io) => ImapFailure(format!("I/O error ({:?})", io.kind()), false),
            other => ImapFailure(format!("{other}"), false),
        }
    }
}

impl From<std::io::Error> for ImapFailure {
    fn from(e: std::io::Error) -> Self {
        ImapFailure(format!("I/O error ({:?})", e.kind()), false)
    }
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(c) => tokio_rustls::TlsConnector::from(Arc::new(c)),
        // The ring provider always supports the default versions.
        Err(_) => unreachable!("ring supports TLS 1.2 and 1.3"),
    }
}

async fn wrap_tls(host: &str, tcp: TcpStream) -> Result<Box<dyn Io>, ConnectorError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| {
        ConnectorError::Permanent(format!("`{host}` is not a valid TLS server name"))
    })?;
    let tls = step("TLS handshake", tls_connector().connect(name, tcp)).await?;
    Ok(Box::new(tls))
}

/// Connects, secures and logs in.
pub async fn connect(s: &ImapSettings) -> Result<Session, ConnectorError> {
    let tcp = step("connect", TcpStream::connect((s.host.as_str(), s.port))).await?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = match s.tls {
        Tls::None => Box::new(tcp),
        Tls::Tls => wrap_tls(&s.host, tcp).await?,
        Tls::Starttls => {
            let mut c = async_imap::Client::new(tcp);
            greeting(&mut c).await?;
            step("STARTTLS", c.run_command_and_check_ok("STARTTLS", None)).await?;
            wrap_tls(&s.host, c.into_inner()).await?
        }
    };
    let mut client = async_imap::Client::new(stream);
    if s.tls != Tls::Starttls {
        greeting(&mut client).await?;
    }
    match tokio::time::timeout(STEP_TIMEOUT, client.login(&s.username, s.password.expose())).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((async_imap::error::Error::No(m), _))) => Err(ConnectorError::Unauthorized(
            format!("IMAP login refused: {m}")
                .chars()
                .take(300)
                .collect(),
        )),
        Ok(Err((e, _))) => Err(ImapFailure::from(e).into_connector("login")),
        Err(_) => Err(ConnectorError::Transient("IMAP login: timed out".into())),
    }
}

async fn greeting<T: Io>(c: &mut async_imap::Client<T>) -> Result<(), ConnectorError> {
    match step("greeting", c.read_response()).await? {
        Some(_) => Ok(()),
        None => Err(ConnectorError::Transient(
            "IMAP greeting: connection closed".into(),
        )),
    }
}
