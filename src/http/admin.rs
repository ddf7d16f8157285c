//! Admin-only routes: agents and API tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{limit, reject_unknown, Page, Params, Principal};
use super::extract::ValidJson;
use super::problem::Problem;
use super::AppState;
use crate::auth::{generate_token, hash_token, Role};
use crate::domain::EmailAddress;
use crate::store::{Agent, AgentPatch, TokenInfo};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(get_agent, update_agent))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

fn role(field: &str, r: &str) -> Result<Role, Problem> {
    Role::parse(r)
        .ok_or_else(|| Problem::invalid(field, "invalid_role", "role must be admin or agent"))
}

fn text(field: &str, v: &str, max: usize) -> Result<String, Problem> {
    let t = v.trim();
    if t.is_empty() || t.chars().count() > max || t.chars().any(char::is_control) {
        return Err(Problem::invalid(
            field,
            "invalid_field",
            format!("{field} must be 1 to {max} printable characters"),
        ));
    }
    Ok(t.to_string())
}

pub(super) fn keyset_after(
    q: &std::collections::HashMap<String, String>,
) -> Result<Option<String>, Problem> {
    q.get("cursor")
        .filter(|c| !c.is_empty())
        .map(|c| {
            URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    Problem::bad_request("invalid_cursor", "cursor is not one this API returned")
                })
        })
        .transpose()
}

pub(super) fn keyset_page<T>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Page<T> {
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| URL_SAFE_NO_PAD.encode(key(r)))
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor: next,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAgent {
    name: String,
    email: String,
    role: String,
}

#[utoipa::path(
    post,
    path = "/agents",
    tag = "agents",
    summary = "Create an agent (admin)",
    request_body = NewAgent,
    responses(
        (status = 201, description = "created", body = Agent),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn create_agent(
    p: Principal,
    State(s): State<AppState>,
    ValidJson(b): ValidJson<NewAgent>,
) -> Result<(StatusCode, Json<Agent>), Problem> {
    p.require_admin()?;
    let name = text("name", &b.name, 200)?;
    let email = EmailAddress::parse(&b.email).ok_or_else(|| {
        Problem::invalid("email", "invalid_email", "email is not a valid address")
    })?;
    let role = role("role", &b.role)?;
    let agent = s
        .store
        .create_agent(&name, email.as_str(), role.as_str())
        .await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

#[utoipa::path(
    get,
    path = "/agents",
    tag = "agents",
    summary = "List agents (admin)",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page of agents", body = Page<Agent>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_agents(
    p: Principal,
    State(s): State<AppState>,
    axum::extract::Query(q): Params,
) -> Result<Json<Page<Agent>>, Problem> {
    p.require_admin()?;
    reject_unknown(&q, &["limit", "cursor"])?;
    let limit = limit(&q)?;
    let rows = s
        .store
        .list_agents(keyset_after(&q)?.as_deref(), limit + 1)
        .await?;
    Ok(Json(keyset_page(rows, limit, |a| a.id.clone())))
}

#[utoipa::path(
    get,
    path = "/agents/{id}",
    tag = "agents",
    summary = "An agent (admin)",
    params(
        ("id" = String, Path, description = "agent id"),
    ),
    responses(
        (status = 200, description = "the agent", body = Agent),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn get_agent(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Agent>, Problem> {
    p.require_admin()?;
    Ok(Json(
        s.store
            .get_agent(&id)
            .await?
            .ok_or_else(|| Problem::not_found("agent"))?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AgentChange {
    name: Option<String>,
    role: Option<String>,
    active: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/agents/{id}",
    tag = "agents",
    summary = "Change an agent; deactivation stops its tokens (admin)",
    params(
        ("id" = String, Path, description = "agent id"),
    ),
    request_body = AgentChange,
    responses(
        (status = 200, description = "the agent", body = Agent),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn update_agent(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    ValidJson(b): ValidJson<AgentChange>,
) -> Result<Json<Agent>, Problem> {
    p.require_admin()?;
    let patch = AgentPatch {
        name: b
            .name
            .as_deref()
            .map(|n| text("name", n, 200))
            .transpose()?,
        role: b
            .role
            .as_deref()
            .map(|r| role("role", r).map(|r| r.as_str().to_string()))
            .transpose()?,
        active: b.active,
    };
    Ok(Json(s.store.update_agent(&id, &patch).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    /// The agent the token acts for (its role follows the agent's).
    agent_id: Option<String>,
    /// Role of a token that acts for no agent.
    role: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct CreatedToken {
    #[serde(flatten)]
    info: TokenInfo,
    /// Shown once; only its hash is stored.
    token: String,
}

#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    summary = "Create an API token, shown once (admin)",
    request_body = NewToken,
    responses(
        (status = 201, description = "created; `token` is shown only now", body = CreatedToken),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn create_token(
    p: Principal,
    State(s): State<AppState>,
    ValidJson(b): ValidJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), Problem> {
    p.require_admin()?;
    let name = text("name", &b.name, 200)?;
    let role = match (&b.agent_id, &b.role) {
        (Some(a), _) => {
            let agent = s.store.get_agent(a).await?.ok_or_else(|| {
                Problem::invalid("agent_id", "unknown_agent", format!("no agent `{a}`"))
            })?;
            if !agent.active {
                return Err(Problem::invalid(
                    "agent_id",
                    "inactive_agent",
                    "the agent is deactivated",
                ));
            }
            role("role", &agent.role)?
        }
        (None, Some(r)) => role("role", r)?,
        (None, None) => {
            return Err(Problem::invalid(
                "role",
                "missing_field",
                "give agent_id or role",
            ))
        }
    };
    let token = generate_token();
    let info = s
        .store
        .create_agent_token(
            &name,
            role.as_str(),
            &hash_token(&token),
            b.agent_id.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token })))
}

#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    summary = "List tokens without their secret (admin)",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page of tokens", body = Page<TokenInfo>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_tokens(
    p: Principal,
    State(s): State<AppState>,
    axum::extract::Query(q): Params,
) -> Result<Json<Page<TokenInfo>>, Problem> {
    p.require_admin()?;
    reject_unknown(&q, &["limit", "cursor"])?;
    let limit = limit(&q)?;
    let rows = s
        .store
        .list_tokens(keyset_after(&q)?.as_deref(), limit + 1)
        .await?;
    Ok(Json(keyset_page(rows, limit, |t| t.id.clone())))
}

#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    tag = "tokens",
    summary = "Revoke a token (admin)",
    params(
        ("id" = String, Path, description = "token id"),
    ),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "needs an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not found", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn revoke_token(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    p.require_admin()?;
    s.store.revoke_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
