//! RFC 9457 problem details: every error the API or the webhook endpoint returns.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    #[schema(value_type = String)]
    pub title: &'static str,
    pub status: u16,
    /// Stable machine-readable code, e.g. `bad_signature`.
    #[schema(value_type = String)]
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request field (or header) that is wrong, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        detail: impl Into<Option<String>>,
    ) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code,
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, code, Some(detail.into()))
    }
    /// 422: the request is well-formed but a field is wrong.
    pub fn invalid(field: &str, code: &'static str, detail: impl Into<String>) -> Problem {
        let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, Some(detail.into()));
        p.field = Some(field.to_string());
        p
    }
    pub fn forbidden(detail: &str) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", Some(detail.to_string()))
    }
    pub fn not_found(what: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            Some(format!("{what} not found")),
        )
    }
    pub fn unauthorized(detail: &str) -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            Some(detail.to_string()),
        )
    }
    pub fn unavailable(detail: &str) -> Problem {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Some(detail.to_string()),
        );
        p.retry_after = Some(5);
        p
    }
    /// A 500 that says nothing of internals; the cause goes to the log.
    pub fn internal(e: &anyhow::Error) -> Problem {
        tracing::error!(error = %format!("{e:#}"), "internal error");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if status == StatusCode::UNAUTHORIZED && self.code == "unauthorized" {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Problem {
        Problem::internal(&e)
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Problem {
        use crate::store::StoreError as E;
        match e {
            E::NotFound(what) => Problem::not_found(what),
            E::Invalid {
                field,
                code,
                message,
            } => Problem::invalid(field, code, message),
            E::Conflict { code, message } => {
                Problem::new(StatusCode::CONFLICT, code, Some(message))
            }
            E::Other(e) => Problem::internal(&e),
        }
    }
}
