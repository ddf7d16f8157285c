//! Customer merges by hand: `POST /customers/{id}/merge`, `POST /customers/{id}/unmerge`,
//! and the audit trail `GET /customers/{id}/merges`. Automatic merges (the pipeline) appear
//! in the same trail with actor `pipeline` and the identities that linked them as evidence.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::Principal;
use super::extract::ValidJson;
use super::problem::Problem;
use super::AppState;
use crate::store::MergeRecord;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(merge_customer))
        .routes(routes!(unmerge_customer))
        .routes(routes!(customer_merges))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CustomerMergeBody {
    /// The customer to merge into this one (this one survives).
    other: String,
    reason: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CustomerUnmergeBody {
    merge_id: String,
    reason: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct MergeList {
    items: Vec<MergeRecord>,
}

fn reason(r: Option<&str>, default: &str) -> Result<String, Problem> {
    match r.map(str::trim) {
        None | Some("") => Ok(default.to_string()),
        Some(r) if r.chars().count() > 1000 => Err(Problem::invalid(
            "reason",
            "invalid_reason",
            "reason must be at most 1000 characters",
        )),
        Some(r) => Ok(r.to_string()),
    }
}

fn id_field(field: &'static str, v: &str) -> Result<(), Problem> {
    if v.is_empty() || v.len() > 100 {
        return Err(Problem::invalid(
            field,
            "invalid_id",
            format!("{field} must be 1 to 100 characters"),
        ));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/customers/{id}/merge",
    tag = "customers",
    summary = "Merge another customer into this one (reversible; audited; customer.merged)",
    params(("id" = String, Path, description = "the surviving customer (an alias resolves to its survivor)")),
    request_body = CustomerMergeBody,
    responses(
        (status = 200, description = "the merge record", body = MergeRecord),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already one customer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn merge_customer(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<CustomerMergeBody>,
) -> Result<Json<MergeRecord>, Problem> {
    id_field("other", &b.other)?;
    let reason = reason(b.reason.as_deref(), "merged by an agent")?;
    let rec = s
        .store
        .merge_customers(&id, &b.other, &p.actor(), &reason)
        .await?;
    Ok(Json(rec))
}

#[utoipa::path(
    post,
    path = "/customers/{id}/unmerge",
    tag = "customers",
    summary = "Undo a merge: both customers, identities, conversations and entries as before",
    params(("id" = String, Path, description = "the customer the merge went into")),
    request_body = CustomerUnmergeBody,
    responses(
        (status = 200, description = "the merge record, now undone", body = MergeRecord),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already undone", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn unmerge_customer(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<CustomerUnmergeBody>,
) -> Result<Json<MergeRecord>, Problem> {
    id_field("merge_id", &b.merge_id)?;
    let reason = reason(b.reason.as_deref(), "unmerged by an agent")?;
    let rec = s
        .store
        .unmerge_customers(&id, &b.merge_id, &p.actor(), &reason)
        .await?;
    Ok(Json(rec))
}

#[utoipa::path(
    get,
    path = "/customers/{id}/merges",
    tag = "customers",
    summary = "The merge audit trail: actor, reason, evidence, when, and any undoing",
    params(("id" = String, Path, description = "customer id")),
    responses(
        (status = 200, description = "every merge that touched the customer, oldest first", body = MergeList),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn customer_merges(
    _p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MergeList>, Problem> {
    let canonical = s
        .store
        .canonical_customer(&id)
        .await?
        .ok_or_else(|| Problem::not_found("customer"))?;
    Ok(Json(MergeList {
        items: s.store.customer_merges(&canonical).await?,
    }))
}
