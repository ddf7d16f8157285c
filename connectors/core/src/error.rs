//! Errors a connector reports. The hub maps each to an HTTP answer, a retry or a visible failure.

use std::time::Duration;

/// Why a webhook request was refused. Every variant becomes a 401; the variant name is the
/// `reason` label of the rejected counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("signature mismatch")]
    Mismatch,
    #[error("timestamp outside tolerance")]
    Expired,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A handshake whose token does not match (Meta's `hub.verify_token`): 403, as the
    /// provider documents.
    #[error("{0} does not match")]
    Forbidden(&'static str),
}

impl VerifyError {
    /// A short stable label for metrics and problem codes.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Missing(_) => "missing_signature",
            VerifyError::Malformed(_) => "malformed_signature",
            VerifyError::Mismatch => "bad_signature",
            VerifyError::Expired => "expired_timestamp",
            VerifyError::MethodNotAllowed => "method_not_allowed",
            VerifyError::Forbidden(_) => "bad_verify_token",
        }
    }
}

/// Why a verified request could not be turned into raw events. Becomes a 400 naming the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngressError {
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("missing field: {0}")]
    MissingField(String),
}

/// Why a stored raw event could not be normalised. The pipeline retries and finally parks the
/// job as dead with this message visible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NormalizeError(pub String);

/// Errors from talking to a provider (polling, sending).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    #[error("rate limited")]
    RateLimited { retry_after: Option<Duration> },
    #[error("transient: {0}")]
    Transient(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("permanent: {0}")]
    Permanent(String),
}
