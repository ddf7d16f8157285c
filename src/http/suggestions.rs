//! Merge suggestions: `GET /merge-suggestions`, `POST /merge-suggestions/{id}/accept` (merges
//! the two customers like a manual merge, with the suggestion as evidence) and
//! `POST /merge-suggestions/{id}/reject` (remembered: the pair is never suggested again).

use axum::extract::{Path, Query, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{limit, reject_unknown, Page, Params, Principal};
use super::problem::Problem;
use super::AppState;
use crate::store::suggest::{MergeSuggestion, SuggestionFilter};
use crate::store::MergeRecord;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_suggestions))
        .routes(routes!(accept_suggestion))
        .routes(routes!(reject_suggestion))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Accepted {
    suggestion: MergeSuggestion,
    merge: MergeRecord,
}

fn bad_cursor() -> Problem {
    Problem::bad_request("invalid_cursor", "cursor is not one this API returned")
}

fn decode(c: &str) -> Result<(i64, String), Problem> {
    let raw = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad_cursor())?;
    let s = String::from_utf8(raw).map_err(|_| bad_cursor())?;
    let (score, id) = s.split_once(':').ok_or_else(bad_cursor)?;
    Ok((score.parse().map_err(|_| bad_cursor())?, id.to_string()))
}

fn id_param(id: &str) -> Result<(), Problem> {
    if id.is_empty() || id.len() > 100 {
        return Err(Problem::bad_request(
            "invalid_id",
            "id must be 1 to 100 characters",
        ));
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/merge-suggestions",
    tag = "customers",
    summary = "Pairs of customers that weak evidence says may be one person, highest score first",
    params(
        ("status" = Option<String>, Query, description = "open (default) | accepted | rejected | closed | all"),
        ("min_score" = Option<f64>, Query, description = "only scores at least this (log2 likelihood ratio)"),
        ("customer" = Option<String>, Query, description = "only suggestions involving this customer (an alias resolves)"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page of suggestions", body = Page<MergeSuggestion>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_suggestions(
    _p: Principal,
    State(s): State<AppState>,
    Query(q): Params,
) -> Result<Json<Page<MergeSuggestion>>, Problem> {
    reject_unknown(&q, &["status", "min_score", "customer", "limit", "cursor"])?;
    let status = match q.get("status").map(String::as_str) {
        None | Some("") => Some("open".to_string()),
        Some("all") => None,
        Some(st @ ("open" | "accepted" | "rejected" | "closed")) => Some(st.to_string()),
        Some(_) => {
            return Err(Problem::bad_request(
                "invalid_status",
                "status must be one of open, accepted, rejected, closed, all",
            ))
        }
    };
    let min_score = match q.get("min_score").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && x.abs() <= 1000.0)
                .ok_or_else(|| {
                    Problem::bad_request(
                        "invalid_min_score",
                        "min_score must be a number from -1000 to 1000",
                    )
                })?,
        ),
    };
    let customer = match q.get("customer").filter(|v| !v.is_empty()) {
        None => None,
        Some(c) => {
            id_param(c)?;
            // An unknown customer has no suggestions; an alias means its customer.
            Some(
                s.store
                    .canonical_customer(c)
                    .await?
                    .unwrap_or_else(|| c.clone()),
            )
        }
    };
    let limit = limit(&q)?;
    let after = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(decode(c)?),
    };
    let mut items = s
        .store
        .list_suggestions(&SuggestionFilter {
            status,
            min_score,
            customer,
            after,
            limit: limit + 1,
        })
        .await?;
    let next = (items.len() as i64 > limit).then(|| {
        items.truncate(limit as usize);
        items.last().map(|x| {
            URL_SAFE_NO_PAD.encode(format!("{}:{}", (x.score * 1000.0).round() as i64, x.id))
        })
    });
    Ok(Json(Page {
        items,
        next_cursor: next.flatten(),
    }))
}

#[utoipa::path(
    post,
    path = "/merge-suggestions/{id}/accept",
    tag = "customers",
    summary = "Accept a suggestion: merge the two customers (reversible; audited; customer.merged)",
    params(("id" = String, Path, description = "suggestion id")),
    responses(
        (status = 200, description = "the suggestion, now accepted, and the merge it made", body = Accepted),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already decided, or the two are one customer already", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn accept_suggestion(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Accepted>, Problem> {
    id_param(&id)?;
    let (merge, suggestion) = s.store.accept_suggestion(&id, &p.actor()).await?;
    Ok(Json(Accepted { suggestion, merge }))
}

#[utoipa::path(
    post,
    path = "/merge-suggestions/{id}/reject",
    tag = "customers",
    summary = "Reject a suggestion: the pair is remembered and never suggested again",
    params(("id" = String, Path, description = "suggestion id")),
    responses(
        (status = 200, description = "the suggestion, now rejected", body = MergeSuggestion),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already decided", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn reject_suggestion(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MergeSuggestion>, Problem> {
    id_param(&id)?;
    Ok(Json(s.store.reject_suggestion(&id, &p.actor()).await?))
}
