//! `GET /api/v1/events`: Server-Sent Events from the event log. Each event carries its id;
//! a client reconnecting with `Last-Event-ID` gets everything after it, without gaps, for as
//! long as events are kept (`events.retention_hours`). The log is shared by every node: on
//! PostgreSQL a stream wakes when any node appends (LISTEN/NOTIFY, see `live`), else it looks
//! on a timer.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};

use super::api::{reject_unknown, Principal};
use super::problem::Problem;
use super::AppState;
use crate::store::{Store, EVENT_KINDS};

struct Tail {
    store: Store,
    after: i64,
    kinds: Option<Vec<String>>,
    buf: VecDeque<Event>,
    /// Sent first when the client's Last-Event-ID is older than what is kept.
    gap: Option<Event>,
    stopping: tokio::sync::watch::Receiver<bool>,
    live: super::live::LiveEvents,
    /// Changes when any node appended an event (PostgreSQL).
    wake: tokio::sync::watch::Receiver<u64>,
}

#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    summary = "Live events (Server-Sent Events); Last-Event-ID resumes without gaps",
    params(
        ("types" = Option<String>, Query, description = "comma-separated kinds: message.created, conversation.updated, outbound.status, customer.merged, customer.unmerged"),
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id"),
        ("last_event_id" = Option<i64>, Query, description = "the same, for clients that cannot set headers"),
    ),
    responses(
        (status = 200, description = "text/event-stream; each event has id, event (its kind) and data (JSON of EventRecord)", content_type = "text/event-stream", body = String),
        (status = 400, description = "bad request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid token", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn events(
    _p: Principal,
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    reject_unknown(&q, &["types", "last_event_id"])?;
    let kinds = match q.get("types").filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => {
            let list: Vec<String> = t.split(',').map(|k| k.trim().to_string()).collect();
            if let Some(bad) = list.iter().find(|k| !EVENT_KINDS.contains(&k.as_str())) {
                return Err(Problem::bad_request(
                    "invalid_types",
                    format!(
                        "unknown event type `{bad}`; known: {}",
                        EVENT_KINDS.join(", ")
                    ),
                ));
            }
            Some(list)
        }
    };
    // EventSource sends Last-Event-ID on reconnect; the query form serves clients that cannot
    // set headers.
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| q.get("last_event_id").cloned());
    let (after, gap) = match last {
        Some(v) => {
            let id: i64 = v.trim().parse().map_err(|_| {
                Problem::bad_request("invalid_last_event_id", "Last-Event-ID must be an event id")
            })?;
            let oldest = s.store.oldest_event_id().await?;
            let gap = (oldest > 0 && id + 1 < oldest).then(|| {
                Event::default().event("gap").data(
                    serde_json::json!({ "oldest_kept": oldest, "requested_after": id }).to_string(),
                )
            });
            (id, gap)
        }
        None => (s.store.latest_event_id().await?, None),
    };
    let tail = Tail {
        store: s.store.clone(),
        after,
        kinds,
        buf: VecDeque::new(),
        gap,
        stopping: s.stopping.clone(),
        wake: s.live.subscribe(),
        live: s.live.clone(),
    };
    let stream = stream::unfold(tail, |mut t| async move {
        if let Some(g) = t.gap.take() {
            return Some((Ok(g), t));
        }
        loop {
            if *t.stopping.borrow() {
                // The server is stopping: end the stream; the client reconnects elsewhere
                // with Last-Event-ID and misses nothing.
                return None;
            }
            if let Some(e) = t.buf.pop_front() {
                return Some((Ok(e), t));
            }
            // Marks the current version seen before looking, so a notification that arrives
            // during the look wakes the wait below.
            t.wake.borrow_and_update();
            match t.store.events_after_settled(t.after, 500).await {
                Ok(evs) if !evs.is_empty() => {
                    for e in evs {
                        t.after = e.id;
                        if t.kinds.as_ref().is_some_and(|k| !k.contains(&e.kind)) {
                            continue;
                        }
                        let data = serde_json::json!({
                            "id": e.id,
                            "type": e.kind,
                            "conversation_id": e.conversation_id,
                            "customer_id": e.customer_id,
                            "created_at": e.created_at,
                            "data": e.payload,
                        });
                        t.buf.push_back(
                            Event::default()
                                .id(e.id.to_string())
                                .event(e.kind)
                                .data(data.to_string()),
                        );
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(t.live.poll_interval()) => {}
                        _ = t.wake.changed() => {}
                        _ = t.stopping.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event stream read failed");
                    tokio::time::sleep(super::live::FAST_POLL * 5).await;
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
