//! The agents' inbox: agents and tokens (roles), conversation workflow with every change on
//! the timeline, labels, notes, merges, snoozes, saved replies.

mod common;

use common::{assert_problem, spawn_app, Db};
use serde_json::json;

/// Creates an agent and a token acting for it; returns (agent id, token).
async fn agent(app: &common::TestApp, email: &str, role: &str) -> (String, String) {
    let r = app
        .post_json(
            "/api/v1/agents",
            json!({"name": "Bea", "email": email, "role": role}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let a: serde_json::Value = r.json().await.unwrap();
    let id = a["id"].as_str().unwrap().to_string();
    let r = app
        .post_json(
            "/api/v1/tokens",
            json!({"name": "bea laptop", "agent_id": id}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let t: serde_json::Value = r.json().await.unwrap();
    assert_eq!(t["role"], role);
    (id, t["token"].as_str().unwrap().to_string())
}

fn with_token(
    app: &common::TestApp,
    token: &str,
    m: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    app.client
        .request(m, format!("{}{path}", app.addr))
        .bearer_auth(token)
}

async fn an_agent_token_cannot_manage_agents_or_tokens(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let (_id, token) = agent(&app, "bea@team.io", "agent").await;
    let get = with_token(&app, &token, reqwest::Method::GET, "/api/v1/agents")
        .send()
        .await
        .unwrap();
    assert_problem(get, 403, "forbidden").await;
    let post = with_token(&app, &token, reqwest::Method::POST, "/api/v1/tokens")
        .json(&json!({"name": "x", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_problem(post, 403, "forbidden").await;
    // An agent token works for the inbox.
    let ok = with_token(&app, &token, reqwest::Method::GET, "/api/v1/conversations")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    app.stop().await;
}
on_both_backends!(
    an_agent_token_cannot_manage_agents_or_tokens,
    super::an_agent_token_cannot_manage_agents_or_tokens
);

async fn agents_are_listed_updated_and_deactivation_stops_their_tokens(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let (id, token) = agent(&app, "Bea@Team.io", "agent").await;
    let dup = app
        .post_json(
            "/api/v1/agents",
            json!({"name": "Bea 2", "email": "bea@team.io", "role": "agent"}),
        )
        .await;
    assert_problem(dup, 409, "agent_exists").await;
    let bad = app
        .post_json(
            "/api/v1/agents",
            json!({"name": "X", "email": "nope", "role": "agent"}),
        )
        .await;
    assert_eq!(
        assert_problem(bad, 422, "invalid_email").await["field"],
        "email"
    );
    let bad = app
        .post_json(
            "/api/v1/agents",
            json!({"name": "X", "email": "x@y.io", "role": "root"}),
        )
        .await;
    assert_eq!(
        assert_problem(bad, 422, "invalid_role").await["field"],
        "role"
    );
    let list = app.get_json("/api/v1/agents").await;
    assert_eq!(list["items"][0]["email"], "bea@team.io");
    assert!(list.get("next_cursor").is_some());
    // Promoting the agent promotes its tokens at once.
    let r = app
        .patch_json(&format!("/api/v1/agents/{id}"), json!({"role": "admin"}))
        .await;
    assert_eq!(r.status(), 200);
    let ok = with_token(&app, &token, reqwest::Method::GET, "/api/v1/agents")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let r = app
        .patch_json(&format!("/api/v1/agents/{id}"), json!({"active": false}))
        .await;
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["active"],
        false
    );
    let gone = with_token(&app, &token, reqwest::Method::GET, "/api/v1/conversations")
        .send()
        .await
        .unwrap();
    assert_problem(gone, 401, "unauthorized").await;
    app.stop().await;
}
on_both_backends!(
    agents_are_listed_updated_and_deactivation_stops_their_tokens,
    super::agents_are_listed_updated_and_deactivation_stops_their_tokens
);

async fn tokens_are_shown_once_listed_without_secret_and_revocable(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let r = app
        .post_json("/api/v1/tokens", json!({"name": "crm", "role": "agent"}))
        .await;
    assert_eq!(r.status(), 201);
    let t: serde_json::Value = r.json().await.unwrap();
    let token = t["token"].as_str().unwrap().to_string();
    assert!(token.len() >= 46, "256 bits, base64url");
    let list = app.get_json("/api/v1/tokens").await;
    assert!(
        !list.to_string().contains(&token),
        "the token itself is never listed"
    );
    let id = t["id"].as_str().unwrap();
    assert_eq!(
        with_token(&app, &token, reqwest::Method::GET, "/api/v1/conversations")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.delete(&format!("/api/v1/tokens/{id}")).await.status(),
        204
    );
    let r = with_token(&app, &token, reqwest::Method::GET, "/api/v1/conversations")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;
    assert_problem(app.delete("/api/v1/tokens/nope").await, 404, "not_found").await;
    let r = app.post_json("/api/v1/tokens", json!({"name": "x"})).await;
    assert_eq!(
        assert_problem(r, 422, "missing_field").await["field"],
        "role"
    );
    app.stop().await;
}
on_both_backends!(
    tokens_are_shown_once_listed_without_secret_and_revocable,
    super::tokens_are_shown_once_listed_without_secret_and_revocable
);

async fn workflow_changes_are_applied_and_recorded_with_who_did_it(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let (agent_id, token) = agent(&app, "bea@team.io", "agent").await;
    let conv = app.conversation("t1", "ada@example.com").await;
    let r = with_token(
        &app,
        &token,
        reqwest::Method::PATCH,
        &format!("/api/v1/conversations/{conv}"),
    )
    .json(&json!({"status": "pending", "assignee_id": agent_id, "priority": "high"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let c: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (
            c["status"].as_str(),
            c["assignee_id"].as_str(),
            c["priority"].as_str()
        ),
        (Some("pending"), Some(agent_id.as_str()), Some("high"))
    );
    let mine = app
        .get_json(&format!("/api/v1/conversations?assignee={agent_id}"))
        .await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get_json("/api/v1/conversations?assignee=none").await["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let r = app
        .patch_json(
            &format!("/api/v1/conversations/{conv}"),
            json!({"assignee_id": null}),
        )
        .await;
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["assignee_id"],
        serde_json::Value::Null
    );
    let detail = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    let acts: Vec<(String, String)> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "activity")
        .map(|e| {
            (
                e["body"]["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        acts,
        vec![
            ("status_changed".to_string(), agent_id.clone()),
            ("assigned".to_string(), agent_id.clone()),
            ("priority_changed".to_string(), agent_id.clone()),
            ("unassigned".to_string(), acts[3].1.clone()),
        ]
    );
    assert!(
        acts[3].1.starts_with("token:"),
        "an admin token without agent is recorded as the token"
    );
    // Bad values name the field.
    let r = app
        .patch_json(
            &format!("/api/v1/conversations/{conv}"),
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(
        assert_problem(r, 422, "invalid_status").await["field"],
        "status"
    );
    let r = app
        .patch_json(
            &format!("/api/v1/conversations/{conv}"),
            json!({"assignee_id": "ghost"}),
        )
        .await;
    assert_eq!(
        assert_problem(r, 422, "unknown_agent").await["field"],
        "assignee_id"
    );
    let r = app
        .patch_json(
            &format!("/api/v1/conversations/{conv}"),
            json!({"status": "snoozed"}),
        )
        .await;
    assert_eq!(
        assert_problem(r, 422, "snoozed_until_required").await["field"],
        "snoozed_until"
    );
    let r = app
        .patch_json(
            &format!("/api/v1/conversations/{conv}"),
            json!({"priority": 3}),
        )
        .await;
    assert_eq!(
        assert_problem(r, 422, "invalid_field").await["field"],
        "priority"
    );
    app.stop().await;
}
on_both_backends!(
    workflow_changes_are_applied_and_recorded_with_who_did_it,
    super::workflow_changes_are_applied_and_recorded_with_who_did_it
);

async fn a_snoozed_conversation_reopens_when_the_customer_writes_or_its_time_comes(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let r = app
        .patch_json(
            &format!("/api/v1/conversations/{conv}"),
            json!({"status": "snoozed", "snoozed_until": later}),
        )
        .await;
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "snoozed"
    );
    app.send(
        json!({"id": "again", "thread": "t1", "text": "any news?", "email": "ada@example.com"}),
    )
    .await;
    app.drain().await;
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(c["status"], "open");
    assert_eq!(c["snoozed_until"], serde_json::Value::Null);
    let reopen = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["kind"] == "activity")
        .unwrap()
        .clone();
    assert_eq!(
        (reopen["body"]["reason"].as_str(), reopen["actor"].as_str()),
        (Some("customer wrote"), Some("system"))
    );

    // Resolved conversations reopen too when the customer writes.
    app.patch_json(
        &format!("/api/v1/conversations/{conv}"),
        json!({"status": "resolved"}),
    )
    .await;
    app.send(json!({"id": "again2", "thread": "t1", "text": "one more thing", "email": "ada@example.com"})).await;
    app.drain().await;
    assert_eq!(
        app.get_json(&format!("/api/v1/conversations/{conv}")).await["status"],
        "open"
    );

    // The sweep reopens a snooze whose time has passed.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(300)).to_rfc3339();
    app.patch_json(
        &format!("/api/v1/conversations/{conv}"),
        json!({"status": "snoozed", "snoozed_until": soon}),
    )
    .await;
    let reopened = app
        .store
        .reopen_due_snoozes(switchboard::store::now_ms() + 1_000)
        .await
        .unwrap();
    assert_eq!(reopened, vec![conv.clone()]);
    assert_eq!(
        app.get_json(&format!("/api/v1/conversations/{conv}")).await["status"],
        "open"
    );
    let r = app
        .patch_json(
            &format!("/api/v1/conversations/{conv}"),
            json!({"status": "snoozed", "snoozed_until": "2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_problem(r, 422, "invalid_time").await;
    app.stop().await;
}
on_both_backends!(
    a_snoozed_conversation_reopens_when_the_customer_writes_or_its_time_comes,
    super::a_snoozed_conversation_reopens_when_the_customer_writes_or_its_time_comes
);

async fn labels_and_private_notes_are_kept_and_notes_are_never_sent(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let conv = app.conversation("t1", "ada@example.com").await;
    assert_eq!(
        app.post_json(
            &format!("/api/v1/conversations/{conv}/labels"),
            json!({"label": "VIP"})
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        app.post_json(
            &format!("/api/v1/conversations/{conv}/labels"),
            json!({"label": "vip"})
        )
        .await
        .status(),
        204,
        "adding twice is fine"
    );
    app.post_json(
        &format!("/api/v1/conversations/{conv}/labels"),
        json!({"label": "refund"}),
    )
    .await;
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(c["labels"], json!(["refund", "vip"]));
    assert_eq!(
        app.get_json("/api/v1/conversations?label=vip").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.delete(&format!("/api/v1/conversations/{conv}/labels/vip"))
            .await
            .status(),
        204
    );
    assert_problem(
        app.delete(&format!("/api/v1/conversations/{conv}/labels/vip"))
            .await,
        404,
        "not_found",
    )
    .await;
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conv}/notes"),
            json!({"text": "Customer is upset, be kind"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let c = app.get_json(&format!("/api/v1/conversations/{conv}")).await;
    let note = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "note")
        .unwrap()
        .clone();
    assert_eq!(note["body"]["text"], "Customer is upset, be kind");
    assert_eq!(note["direction"], "internal");
    assert_eq!(
        app.store.count("timeline_entries").await.unwrap(),
        5,
        "message, 2 label adds (a repeated add records nothing), 1 removal, 1 note"
    );
    let outbound: i64 = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["direction"] == "outbound")
        .count() as i64;
    assert_eq!(outbound, 0);
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conv}/labels"),
            json!({"label": "a/b"}),
        )
        .await;
    assert_eq!(
        assert_problem(r, 422, "invalid_label").await["field"],
        "label"
    );
    app.stop().await;
}
on_both_backends!(
    labels_and_private_notes_are_kept_and_notes_are_never_sent,
    super::labels_and_private_notes_are_kept_and_notes_are_never_sent
);

async fn merging_conversations_moves_messages_and_later_ones_follow(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let a = app.conversation("t1", "ada@example.com").await;
    let b = app.conversation("t2", "ada@example.com").await;
    let other_customer = app.conversation("t3", "zed@example.com").await;
    app.post_json(
        &format!("/api/v1/conversations/{b}/labels"),
        json!({"label": "billing"}),
    )
    .await;
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{a}/merge"),
            json!({"other": b}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["labels"],
        json!(["billing"])
    );
    let merged = app.get_json(&format!("/api/v1/conversations/{b}")).await;
    assert_eq!(merged["merged_into"], a.as_str());
    assert_eq!(merged["status"], "resolved");
    // A new message on the merged thread lands in the survivor.
    app.send(
        json!({"id": "late", "thread": "t2", "text": "still there?", "email": "ada@example.com"}),
    )
    .await;
    app.drain().await;
    let survivor = app.get_json(&format!("/api/v1/conversations/{a}")).await;
    let texts: Vec<&str> = survivor["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["body"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello", "hello", "still there?"]);
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{a}/merge"),
            json!({"other": other_customer}),
        )
        .await;
    assert_eq!(
        assert_problem(r, 422, "different_customers").await["field"],
        "other"
    );
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{a}/merge"),
            json!({"other": a}),
        )
        .await;
    assert_problem(r, 422, "same_conversation").await;
    app.stop().await;
}
on_both_backends!(
    merging_conversations_moves_messages_and_later_ones_follow,
    super::merging_conversations_moves_messages_and_later_ones_follow
);

async fn saved_replies_can_be_created_listed_changed_and_deleted(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let r = app
        .post_json(
            "/api/v1/saved-replies",
            json!({"name": "shipping", "text": "Your parcel ships within 2 days."}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_problem(
        app.post_json(
            "/api/v1/saved-replies",
            json!({"name": "shipping", "text": "dup"}),
        )
        .await,
        409,
        "saved_reply_exists",
    )
    .await;
    for n in 0..3 {
        app.post_json(
            "/api/v1/saved-replies",
            json!({"name": format!("r{n}"), "text": "x"}),
        )
        .await;
    }
    let p1 = app.get_json("/api/v1/saved-replies?limit=2").await;
    let next = p1["next_cursor"].as_str().unwrap();
    let p2 = app
        .get_json(&format!("/api/v1/saved-replies?limit=2&cursor={next}"))
        .await;
    assert_eq!(
        p1["items"].as_array().unwrap().len() + p2["items"].as_array().unwrap().len(),
        4
    );
    let r = app
        .patch_json(
            &format!("/api/v1/saved-replies/{id}"),
            json!({"text": "Ships in 1 day."}),
        )
        .await;
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["text"],
        "Ships in 1 day."
    );
    assert_eq!(
        app.delete(&format!("/api/v1/saved-replies/{id}"))
            .await
            .status(),
        204
    );
    assert_problem(
        app.delete(&format!("/api/v1/saved-replies/{id}")).await,
        404,
        "not_found",
    )
    .await;
    app.stop().await;
}
on_both_backends!(
    saved_replies_can_be_created_listed_changed_and_deleted,
    super::saved_replies_can_be_created_listed_changed_and_deleted
);
