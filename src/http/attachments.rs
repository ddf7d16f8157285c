//! `GET /api/v1/entries/{id}/attachments/{n}`: an attachment's bytes, decoded from the raw
//! event the entry came from (an email's MIME). Served as a download, never rendered inline,
//! so an HTML or SVG attachment cannot run in the agent's browser.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::Principal;
use super::problem::Problem;
use super::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(entry_attachment))
}

/// A filename safe for a quoted `Content-Disposition` value.
fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    if s.trim().is_empty() {
        "attachment".into()
    } else {
        s
    }
}

#[utoipa::path(
    get,
    path = "/entries/{id}/attachments/{index}",
    tag = "conversations",
    summary = "An attachment's bytes (email), as a download",
    params(
        ("id" = i64, Path, description = "timeline entry id (`id` of a message entry)"),
        ("index" = usize, Path, description = "position in the message's `attachments`, from 0"),
    ),
    responses(
        (status = 200, description = "the attachment's bytes, with its content type and file name", content_type = "application/octet-stream"),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such entry, attachment, or this channel keeps no attachment bytes", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn entry_attachment(
    _p: Principal,
    State(s): State<AppState>,
    Path((id, index)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let id: i64 = id.parse().map_err(|_| Problem::not_found("entry"))?;
    let index: usize = index
        .parse()
        .map_err(|_| Problem::not_found("attachment"))?;
    let raw = s
        .store
        .entry_raw_event(id)
        .await?
        .ok_or_else(|| Problem::not_found("entry"))?;
    let inst = s
        .registry
        .get(&raw.connector_id)
        .ok_or_else(|| Problem::not_found("connector of this entry"))?;
    let content = inst
        .connector
        .attachment(&raw, index)
        .ok_or_else(|| Problem::not_found("attachment"))?;
    let name = safe_name(content.name.as_deref().unwrap_or("attachment"));
    let mut resp = (StatusCode::OK, Body::from(content.bytes)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn file_names_cannot_break_the_header() {
        assert_eq!(safe_name("report 2026.pdf"), "report 2026.pdf");
        assert_eq!(safe_name("a\"b\\c\r\nd.txt"), "a_b_c__d.txt");
        assert_eq!(safe_name("résumé.pdf"), "r_sum_.pdf");
        assert_eq!(safe_name("  "), "attachment");
    }
}
