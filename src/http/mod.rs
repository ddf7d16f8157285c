//! HTTP: webhooks, the inbox API and operations endpoints.

pub mod admin;
pub mod api;
pub mod attachments;
pub mod connectors;
pub mod documents;
pub mod events;
pub mod extract;
pub mod identity;
pub mod inbox;
pub mod live;
pub mod ops;
pub mod problem;
pub mod search;
pub mod subscriptions;
mod suggestions;
pub mod webhooks;

use std::sync::Arc;

use axum::routing::{any, get};
use axum::Router;

use crate::domain::ClaimNormalizer;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub registry: Registry,
    pub ingestor: Ingestor,
    pub metrics: Arc<Metrics>,
    pub claims: ClaimNormalizer,
    pub max_body_bytes: usize,
    /// Wakes the sender worker when a reply is queued, so it leaves at once.
    pub outbound_wake: Arc<tokio::sync::Notify>,
    /// Turns true when shutdown starts: endless responses (SSE) end, so graceful shutdown
    /// does not wait for them forever.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// This node's id (shown with the poll leases on `GET /api/v1/connectors`).
    pub node_id: Arc<str>,
    /// What this node serves: without `api` no `/api/v1`, without `ingest` no `/webhooks`.
    pub roles: crate::node::Roles,
    /// Wakes SSE streams when any node appends an event.
    pub live: live::LiveEvents,
}

/// The OpenAPI 3.1 document's frame; every path comes from the handlers' own annotations
/// as they are registered (utoipa-axum), so the document cannot miss a route.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Switchboard API", description = "The inbox API of the Switchboard omnichannel hub. Errors are application/problem+json (RFC 9457) with a stable `code`; lists are keyset-paginated with `next_cursor`."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        openapi.info.version = env!("CARGO_PKG_VERSION").to_string();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// Every JSON request body goes through `extract::ValidJson`, which answers 400 to a body that
/// is not JSON and 413 to one over its limit before the handler runs; the handlers' own
/// annotations list only what they decide. Found by schemathesis (an empty body got an
/// undocumented 400 on all 14 operations that take one).
fn document_body_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.delete].into_iter().flatten() {
            document_limit(op);
        }
        let ops = [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            if op.request_body.is_none() {
                continue;
            }
            let r = &mut op.responses.responses;
            r.entry("400".into())
                .or_insert_with(|| problem("the body is not valid JSON").into());
            r.entry("413".into())
                .or_insert_with(|| problem("the body is larger than the API accepts").into());
        }
    }
}

/// Every list takes `limit` from 1 to `api::MAX_LIMIT` (checked by `api::limit`); saying so in
/// the schema lets clients (and schemathesis) know a larger page is refused with 400.
fn document_limit(op: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{RefOr, Schema};
    use utoipa::Number;
    for p in op.parameters.iter_mut().flatten() {
        if p.name != "limit" || p.parameter_in != ParameterIn::Query {
            continue;
        }
        if let Some(RefOr::T(Schema::Object(o))) = &mut p.schema {
            o.minimum = Some(Number::Int(1));
            o.maximum = Some(Number::Int(api::MAX_LIMIT as isize));
        }
    }
}

/// The API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = utoipa_axum::router::OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", api::routes())
        .into_openapi();
    document_body_errors(&mut doc);
    doc
}

/// The routes of this node's roles: `/webhooks` with `ingest`, `/api/v1` with `api`;
/// `/healthz`, `/readyz` and `/metrics` always. A route of a role the node lacks is a 404.
pub fn router(state: AppState) -> Router {
    use crate::node::Role;
    use utoipa::OpenApi;
    let mut app = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));
    if state.roles.has(Role::Ingest) {
        app = app.route("/webhooks/{connector_id}", any(webhooks::receive));
    }
    if state.roles.has(Role::Api) {
        let (api, mut doc) = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
            .nest("/api/v1", api::routes())
            .split_for_parts();
        document_body_errors(&mut doc);
        let doc: Arc<str> = doc.to_json().unwrap_or_default().into();
        app = app
            .route(
                "/api/v1/openapi.json",
                get(move || {
                    let doc = doc.clone();
                    async move {
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            doc.to_string(),
                        )
                    }
                }),
            )
            .merge(api);
    }
    app.fallback(ops::not_found).with_state(state)
}
