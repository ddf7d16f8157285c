//! Live events over SSE: every kind arrives with an id, Last-Event-ID resumes without gaps,
//! types filter, and a cursor older than what is kept says so.

mod common;

use std::time::Duration;

use common::receiver::Receiver;
use common::{assert_problem, spawn_app_with, with_reply_url, Db};
use serde_json::json;

#[derive(Debug, Clone)]
struct Sse {
    id: Option<i64>,
    event: String,
    data: serde_json::Value,
}

/// Reads SSE events until `want` of them arrived or 10 s passed.
async fn read_events(resp: &mut reqwest::Response, want: usize) -> Vec<Sse> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < want {
        let Ok(chunk) = tokio::time::timeout_at(deadline, resp.chunk()).await else {
            break;
        };
        let Some(bytes) = chunk.expect("stream") else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut ev = Sse {
                id: None,
                event: "message".into(),
                data: serde_json::Value::Null,
            };
            let mut has_data = false;
            for line in block.lines() {
                if let Some(v) = line
                    .strip_prefix("id: ")
                    .or_else(|| line.strip_prefix("id:"))
                {
                    ev.id = v.trim().parse().ok();
                } else if let Some(v) = line
                    .strip_prefix("event: ")
                    .or_else(|| line.strip_prefix("event:"))
                {
                    ev.event = v.trim().to_string();
                } else if let Some(v) = line
                    .strip_prefix("data: ")
                    .or_else(|| line.strip_prefix("data:"))
                {
                    ev.data = serde_json::from_str(v.trim()).unwrap_or(serde_json::Value::Null);
                    has_data = true;
                }
            }
            if has_data {
                out.push(ev);
            }
        }
    }
    out
}

async fn open(app: &common::TestApp, query: &str, last: Option<i64>) -> reqwest::Response {
    let mut req = app
        .client
        .get(format!("{}/api/v1/events{query}", app.addr))
        .bearer_auth(&app.token);
    if let Some(id) = last {
        req = req.header("last-event-id", id.to_string());
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    r
}

async fn every_kind_of_event_arrives_live_with_an_id(db: Db) {
    let rx = Receiver::start(&[]).await;
    let url = rx.url.clone();
    let Some(app) = spawn_app_with(db, |s| with_reply_url(s, &url)).await else {
        return;
    };
    let mut stream = open(&app, "", None).await;
    let conv = app.conversation("t1", "ada@example.com").await;
    app.post_json(
        &format!("/api/v1/conversations/{conv}/labels"),
        json!({"label": "vip"}),
    )
    .await;
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conv}/replies"),
            json!({"text": "hi"}),
        )
        .await;
    let msg: serde_json::Value = r.json().await.unwrap();
    app.wait_message(&conv, msg["id"].as_str().unwrap(), |s| s == "sent")
        .await;
    // Link two customers: customer.merged.
    app.send(json!({"id": "p", "thread": "t9", "text": "by phone", "phone": "020 7946 0958"}))
        .await;
    app.drain().await;
    app.send(json!({"id": "link", "thread": "t9", "text": "both", "phone": "020 7946 0958", "email": "ada@example.com"})).await;
    app.drain().await;
    // message, label, reply message, reply sent, two messages, merge.
    let evs = read_events(&mut stream, 7).await;
    let kinds: Vec<&str> = evs.iter().map(|e| e.event.as_str()).collect();
    for k in [
        "message.created",
        "conversation.updated",
        "outbound.status",
        "customer.merged",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let ids: Vec<i64> = evs.iter().map(|e| e.id.unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let first = &evs[0];
    assert_eq!(first.event, "message.created");
    assert_eq!(first.data["data"]["body"]["text"], "hello");
    assert_eq!(first.data["conversation_id"], conv.as_str());
    let sent = evs
        .iter()
        .find(|e| e.event == "outbound.status" && e.data["data"]["state"] == "sent")
        .expect("sent status");
    assert_eq!(sent.data["data"]["message_id"], msg["id"]);
    app.stop().await;
}
on_both_backends!(
    every_kind_of_event_arrives_live_with_an_id,
    super::every_kind_of_event_arrives_live_with_an_id
);

async fn last_event_id_resumes_without_gaps_and_types_filter(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    for l in ["a", "b", "c"] {
        app.post_json(
            &format!("/api/v1/conversations/{conv}/labels"),
            json!({"label": l}),
        )
        .await;
    }
    let all = app.store.events_after(0, 100).await.unwrap();
    assert_eq!(all.len(), 4, "one message, three label changes");
    // A client that saw the first event reconnects: it gets the other three, in order.
    let mut s = open(&app, "", Some(all[0].id)).await;
    let got = read_events(&mut s, 3).await;
    assert_eq!(
        got.iter().map(|e| e.id.unwrap()).collect::<Vec<_>>(),
        all[1..].iter().map(|e| e.id).collect::<Vec<_>>()
    );
    // Only messages.
    let mut s = open(&app, "?types=message.created", Some(0)).await;
    app.send(json!({"id": "m2", "thread": "t1", "text": "more", "email": "ada@example.com"}))
        .await;
    app.drain().await;
    let got = read_events(&mut s, 2).await;
    assert!(got.iter().all(|e| e.event == "message.created"), "{got:?}");
    assert_eq!(got.len(), 2);
    let r = app
        .client
        .get(format!("{}/api/v1/events?types=nope", app.addr))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid_types").await;
    let r = app
        .client
        .get(format!("{}/api/v1/events", app.addr))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;
    app.stop().await;
}
on_both_backends!(
    last_event_id_resumes_without_gaps_and_types_filter,
    super::last_event_id_resumes_without_gaps_and_types_filter
);

async fn a_cursor_older_than_the_kept_window_gets_a_gap_event(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    app.post_json(
        &format!("/api/v1/conversations/{conv}/labels"),
        json!({"label": "a"}),
    )
    .await;
    let all = app.store.events_after(0, 100).await.unwrap();
    // Everything before the last event falls out of the window.
    let cut = switchboard::store::now_ms() + 1;
    app.store.prune_events(cut).await.unwrap();
    app.post_json(
        &format!("/api/v1/conversations/{conv}/labels"),
        json!({"label": "b"}),
    )
    .await;
    let mut s = open(&app, "", Some(all[0].id)).await;
    let got = read_events(&mut s, 2).await;
    assert_eq!(got[0].event, "gap");
    assert_eq!(got[0].data["requested_after"], all[0].id);
    assert_eq!(got[1].event, "conversation.updated");
    app.stop().await;
}
on_both_backends!(
    a_cursor_older_than_the_kept_window_gets_a_gap_event,
    super::a_cursor_older_than_the_kept_window_gets_a_gap_event
);

async fn replay_does_not_announce_old_messages_again(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    app.conversation("t1", "ada@example.com").await;
    let before = app.store.events_after(0, 100).await.unwrap().len();
    app.store.enqueue_replay("api", 0).await.unwrap();
    app.drain().await;
    assert_eq!(app.store.events_after(0, 100).await.unwrap().len(), before);
    app.stop().await;
}
on_both_backends!(
    replay_does_not_announce_old_messages_again,
    super::replay_does_not_announce_old_messages_again
);
