//! A customer's business documents across every connected system: orders, payments,
//! invoices (`GET /api/v1/customers/{id}/orders` …), each its current copy.

use axum::extract::{Path, Query, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{limit, reject_unknown, Page, Params, Principal};
use super::problem::Problem;
use super::AppState;
use crate::store::DocumentRow;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(customer_orders))
        .routes(routes!(customer_payments))
        .routes(routes!(customer_invoices))
}

fn decode(
    q: &std::collections::HashMap<String, String>,
) -> Result<Option<(i64, String, String)>, Problem> {
    let Some(c) = q.get("cursor").filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let bad = || Problem::bad_request("invalid_cursor", "cursor is not one this API returned");
    let text = URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let mut parts = text.splitn(3, '\u{1f}');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(at), Some(conn), Some(id)) => Ok(Some((
            at.parse().map_err(|_| bad())?,
            conn.to_string(),
            id.to_string(),
        ))),
        _ => Err(bad()),
    }
}

async fn list(
    s: &AppState,
    id: &str,
    kind: &str,
    q: &std::collections::HashMap<String, String>,
) -> Result<Json<Page<DocumentRow>>, Problem> {
    reject_unknown(q, &["limit", "cursor"])?;
    let limit = limit(q)?;
    let canonical = s
        .store
        .canonical_customer(id)
        .await?
        .ok_or_else(|| Problem::not_found("customer"))?;
    let mut rows = s
        .store
        .customer_documents(&canonical, kind, decode(q)?, limit + 1)
        .await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last()
            .map(|(_, (at, c, id))| URL_SAFE_NO_PAD.encode(format!("{at}\u{1f}{c}\u{1f}{id}")))
    });
    Ok(Json(Page {
        items: rows.into_iter().map(|(d, _)| d).collect(),
        next_cursor: next.flatten(),
    }))
}

#[utoipa::path(
    get,
    path = "/customers/{id}/orders",
    tag = "customers",
    summary = "The customer's orders across every connected system, newest first",
    params(
        ("id" = String, Path, description = "customer id (an alias resolves to its survivor)"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page of orders, each its current copy", body = Page<DocumentRow>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn customer_orders(
    _p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Json<Page<DocumentRow>>, Problem> {
    list(&s, &id, "order", &q).await
}

#[utoipa::path(
    get,
    path = "/customers/{id}/payments",
    tag = "customers",
    summary = "The customer's payments, refunds and disputes across every system, newest first",
    params(
        ("id" = String, Path, description = "customer id (an alias resolves to its survivor)"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page of payments, each its current copy", body = Page<DocumentRow>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn customer_payments(
    _p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Json<Page<DocumentRow>>, Problem> {
    list(&s, &id, "payment", &q).await
}

#[utoipa::path(
    get,
    path = "/customers/{id}/invoices",
    tag = "customers",
    summary = "The customer's invoices across every system, newest first",
    params(
        ("id" = String, Path, description = "customer id (an alias resolves to its survivor)"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page of invoices, each its current copy", body = Page<DocumentRow>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn customer_invoices(
    _p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Json<Page<DocumentRow>>, Problem> {
    list(&s, &id, "invoice", &q).await
}
