//! `GET /api/v1/search`: full-text search over every message, note and customer, ranked and
//! highlighted. Any role may search.
//!
//! `q` accepts words (all must match), "quoted phrases", `OR` between two terms and `-word` or
//! `NOT word` to exclude; anything else in it is just text, so no query is an error once it has
//! 1 to 200 characters. Filters: `status` and `connector` (of the conversation / entry; results are then
//! timeline entries only), `customer` (any id of the customer, aliases included). Results are
//! paged by an opaque cursor holding an offset (relevance order has no stable keyset); a cursor
//! only fits the search that produced it.
//!
//! Order: when no word of `q` is in more than [`RANKED_MAX`](crate::store::RANKED_MAX)
//! entries, every match is ranked, however old; otherwise entries come newest first with
//! rank 0, reaching back [`NEWEST_MAX`](crate::store::NEWEST_MAX) matches. There is no
//! total count.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::api::{Page, Principal};
use super::problem::Problem;
use super::AppState;
use crate::store::{SearchFilter, SearchHit, SearchTerms};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;
const MAX_QUERY_CHARS: usize = 200;
const STATUSES: &[&str] = &["open", "pending", "snoozed", "resolved"];
const PARAMS: &[&str] = &["q", "status", "connector", "customer", "limit", "cursor"];

#[utoipa::path(
    get,
    path = "/search",
    tag = "search",
    summary = "Full-text search over messages, notes and customers",
    description = "Customers (by name or identity value) and timeline entries (message and \
note text), best first. When no word or phrase of `q` is in more than 2,000 entries, every \
match is ranked (`rank`: higher is better), however old. When one is (a word like `the` or \
`order`), entries come newest first with `rank` 0, at most the 10,000 newest (with a \
filter, the 20,000 newest matches are filtered); customers still come first, ranked among \
themselves (for a name shared by many customers, the 500 most recently added names and \
identities are ranked). Ties: customers, then the most recently stored entries. There is \
no total count: `next_cursor` says whether there is more.",
    params(
        ("q" = String, Query, description = "words, \"phrases\", OR, -word"),
        ("status" = Option<String>, Query),
        ("connector" = Option<String>, Query),
        ("customer" = Option<String>, Query, description = "any id of the customer"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "ranked results", body = Page<SearchHit>),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn search(
    _p: Principal,
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Page<SearchHit>>, Problem> {
    if let Some(k) = q.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(Problem::bad_request(
            "unknown_parameter",
            format!(
                "unknown query parameter `{k}`; allowed: {}",
                PARAMS.join(", ")
            ),
        ));
    }
    let text = q.get("q").map(|t| t.trim()).unwrap_or("");
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_QUERY_CHARS {
        return Err(Problem::bad_request(
            "invalid_query",
            format!("q must be 1 to {MAX_QUERY_CHARS} characters"),
        ));
    }
    let status = q.get("status").filter(|v| !v.is_empty()).cloned();
    if let Some(st) = &status {
        if !STATUSES.contains(&st.as_str()) {
            return Err(Problem::bad_request(
                "invalid_status",
                "status must be one of open, pending, snoozed, resolved",
            ));
        }
    }
    let connector = q.get("connector").filter(|v| !v.is_empty()).cloned();
    let customer = q.get("customer").filter(|v| !v.is_empty()).cloned();
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Problem::bad_request(
                    "invalid_limit",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let fingerprint = fingerprint(&[
        text,
        status.as_deref().unwrap_or(""),
        connector.as_deref().unwrap_or(""),
        customer.as_deref().unwrap_or(""),
    ]);
    let offset = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => decode_cursor(c, fingerprint)
            .map_err(|detail| Problem::bad_request("invalid_cursor", detail))?,
    };

    let empty = || {
        Json(Page {
            items: Vec::new(),
            next_cursor: None,
        })
    };
    let terms = SearchTerms::parse(text);
    if terms.is_empty() {
        return Ok(empty());
    }
    let customer_id = match customer {
        None => None,
        // An alias (merged) id searches its survivor; an unknown id matches nothing.
        Some(id) => match s.store.canonical_customer(&id).await? {
            Some(canonical) => Some(canonical),
            None => return Ok(empty()),
        },
    };
    let mut items = s
        .store
        .search(
            &terms,
            &SearchFilter {
                status,
                connector_id: connector,
                customer_id,
                offset,
                limit: limit + 1,
            },
        )
        .await?;
    let next_cursor = (items.len() as i64 > limit).then(|| {
        items.truncate(limit as usize);
        encode_cursor(offset + limit, fingerprint)
    });
    Ok(Json(Page { items, next_cursor }))
}

/// FNV-1a over the search's inputs: ties a cursor to the search it came from.
fn fingerprint(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn encode_cursor(offset: i64, fingerprint: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("s:{offset}:{fingerprint:016x}"))
}

/// The offset in a cursor; the error is the problem's detail.
fn decode_cursor(c: &str, fingerprint: u64) -> Result<i64, &'static str> {
    let bad = || "cursor is not one this API returned";
    let raw = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = s.split(':');
    let (Some("s"), Some(offset), Some(fp), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let offset: i64 = offset.parse().ok().filter(|o| *o >= 0).ok_or_else(bad)?;
    if fp != format!("{fingerprint:016x}") {
        return Err("cursor belongs to a different search (q and filters must stay the same)");
    }
    Ok(offset)
}
