//! `GET /api/v1/search`: full-text search over messages and customers, on both backends.

mod common;

use common::{
    assert_problem, exec_sql as exec, sign, spawn_app, spawn_app_on, spawn_app_with, Db, TestApp,
};
use serde_json::{json, Value};
use sqlx::Connection;
use switchboard::store::{NewRawEvent, SearchFilter, SearchHit, SearchTerms, Store, RANKED_MAX};

async fn search_raw(app: &TestApp, params: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .get(format!("{}/api/v1/search", app.addr))
        .query(params)
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("request")
}

async fn search(app: &TestApp, params: &[(&str, &str)]) -> Value {
    let r = search_raw(app, params).await;
    assert_eq!(r.status(), 200, "search {params:?}");
    r.json().await.expect("json")
}

fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().expect("items").clone()
}

fn of_type(page: &Value, kind: &str) -> Vec<Value> {
    items(page)
        .into_iter()
        .filter(|i| i["type"] == kind)
        .collect()
}

async fn finds_a_word_in_an_old_message_with_a_highlighted_snippet(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.send(
        json!({"id": "old", "thread": "t-old", "email": "ada@example.com",
                    "text": "My <b>parcel</b> & the invoice never arrived, tracking says Zanzibar",
                    "at": "2019-03-04T05:06:07Z"}),
    )
    .await;
    for i in 0..20 {
        app.send(json!({"id": format!("new{i}"), "thread": format!("t{i}"), "email": "bob@example.com",
                        "text": format!("newer message {i} about shipping"), "at": 1_795_000_000 + i}))
            .await;
    }
    app.drain().await;

    let page = search(&app, &[("q", "zanzibar")]).await;
    let found = items(&page);
    assert_eq!(found.len(), 1, "{page}");
    let hit = &found[0];
    assert_eq!(hit["type"], "message");
    assert_eq!(hit["occurred_at"], "2019-03-04T05:06:07.000Z");
    assert_eq!(hit["connector_id"], "api");
    assert_eq!(hit["kind"], "message");
    assert!(hit["entry_id"].as_i64().is_some(), "{hit}");
    assert!(hit["rank"].as_f64().is_some(), "{hit}");
    assert_eq!(page["next_cursor"], Value::Null);
    let snippet = hit["snippet"].as_str().unwrap();
    assert!(snippet.contains("<mark>Zanzibar</mark>"), "{snippet}");
    let bare = snippet.replace("<mark>", "").replace("</mark>", "");
    assert!(
        !bare.contains('<') && !bare.contains('>'),
        "message text is HTML-escaped: {snippet}"
    );

    let conv = app.get_json("/api/v1/conversations?limit=200").await;
    let old_conv = items(&conv)
        .into_iter()
        .find(|c| c["thread_key"] == "t-old")
        .unwrap();
    assert_eq!(hit["conversation_id"], old_conv["id"]);
    assert_eq!(hit["customer_id"], old_conv["customer_id"]);

    // Case-insensitive, several words must all match, a phrase keeps its order.
    assert_eq!(
        items(&search(&app, &[("q", "ZANZIBAR Tracking")]).await).len(),
        1
    );
    assert_eq!(
        items(&search(&app, &[("q", "zanzibar nowhere")]).await).len(),
        0
    );
    assert_eq!(
        items(&search(&app, &[("q", "\"never arrived\"")]).await).len(),
        1
    );
    assert_eq!(
        items(&search(&app, &[("q", "\"arrived never\"")]).await).len(),
        0
    );
    // OR and exclusion.
    assert_eq!(
        items(&search(&app, &[("q", "zanzibar OR shipping")]).await).len(),
        21
    );
    assert_eq!(
        items(&search(&app, &[("q", "shipping -message")]).await).len(),
        0
    );
    app.stop().await;
}
on_both_backends!(
    finds_a_word_in_an_old_message_with_a_highlighted_snippet,
    super::finds_a_word_in_an_old_message_with_a_highlighted_snippet
);

async fn better_matches_rank_first(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.send(json!({"id": "weak", "thread": "a", "email": "a@example.com", "at": 1_795_000_000,
                    "text": "I would like to ask whether a refund is possible for the blue shoes which arrived broken yesterday evening"}))
        .await;
    app.send(
        json!({"id": "strong", "thread": "b", "email": "b@example.com", "at": 1_795_000_001,
                    "text": "refund refund refund"}),
    )
    .await;
    app.drain().await;
    let page = search(&app, &[("q", "refund")]).await;
    let found = items(&page);
    assert_eq!(found.len(), 2, "{page}");
    assert!(
        found[0]["snippet"]
            .as_str()
            .unwrap()
            .starts_with("<mark>refund</mark> <mark>refund</mark>"),
        "{page}"
    );
    assert!(
        found[0]["rank"].as_f64().unwrap() > found[1]["rank"].as_f64().unwrap(),
        "{page}"
    );
    app.stop().await;
}
on_both_backends!(better_matches_rank_first, super::better_matches_rank_first);

async fn filters_by_status_connector_and_customer(db: Db) {
    let Some(app) = spawn_app_with(db, |s| {
        let mut shop = s.connectors[0].clone();
        shop.as_table_mut()
            .unwrap()
            .insert("id".into(), toml::Value::String("shop".into()));
        s.connectors.push(shop);
    })
    .await
    else {
        return;
    };
    app.send(
        json!({"id": "m1", "thread": "a", "text": "lost umbrella one", "email": "ada@example.com",
                    "name": "Ada Umbrella", "at": 1_795_000_000}),
    )
    .await;
    app.send(
        json!({"id": "m2", "thread": "b", "text": "lost umbrella two", "phone": "020 7946 0958",
                    "name": "Ada Umbrella", "at": 1_795_000_001}),
    )
    .await;
    app.send(
        json!({"id": "m3", "thread": "c", "text": "lost umbrella three", "email": "zed@example.com",
                    "at": 1_795_000_002}),
    )
    .await;
    let body = serde_json::to_vec(
        &json!({"id": "s1", "thread": "d", "text": "lost umbrella four",
                                          "email": "yan@example.com", "at": 1_795_000_003}),
    )
    .unwrap();
    assert_eq!(
        app.post_webhook("shop", &body, Some(&sign(&body)))
            .await
            .status(),
        200
    );
    app.drain().await;
    let by_phone = app
        .get_json("/api/v1/customers?phone=%2B442079460958")
        .await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // One event with both identifiers merges the phone customer into the email one.
    app.send(
        json!({"id": "m4", "thread": "a", "text": "hello again", "email": "ada@example.com",
                    "phone": "+44 20 7946 0958", "at": 1_795_000_004}),
    )
    .await;
    app.drain().await;
    let survivor = app
        .get_json("/api/v1/customers?email=ada@example.com")
        .await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(survivor, by_phone);

    let texts = |page: &Value| -> Vec<String> {
        let mut t: Vec<String> = of_type(page, "message")
            .iter()
            .map(|i| {
                i["snippet"]
                    .as_str()
                    .unwrap()
                    .replace("<mark>", "")
                    .replace("</mark>", "")
            })
            .collect();
        t.sort();
        t
    };
    let all = search(&app, &[("q", "umbrella")]).await;
    assert_eq!(texts(&all).len(), 4);
    let customers = of_type(&all, "customer");
    assert_eq!(customers.len(), 1, "merged customers appear once: {all}");
    assert_eq!(customers[0]["customer_id"], survivor.as_str());

    // Status: set one conversation resolved from outside.
    let conv_b = items(&app.get_json("/api/v1/conversations?limit=200").await)
        .into_iter()
        .find(|c| c["thread_key"] == "b")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    exec(
        db,
        &app.db.url,
        &format!("UPDATE conversations SET status = 'resolved' WHERE id = '{conv_b}'"),
    )
    .await;
    let resolved = search(&app, &[("q", "umbrella"), ("status", "resolved")]).await;
    assert_eq!(texts(&resolved), ["lost umbrella two"]);
    assert!(
        of_type(&resolved, "customer").is_empty(),
        "customers have no status"
    );
    let open = search(&app, &[("q", "umbrella"), ("status", "open")]).await;
    assert_eq!(open["items"].as_array().unwrap().len(), 3);
    assert!(
        search(&app, &[("q", "umbrella"), ("status", "pending")]).await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let shop = search(&app, &[("q", "umbrella"), ("connector", "shop")]).await;
    assert_eq!(texts(&shop), ["lost umbrella four"]);
    let api = search(&app, &[("q", "umbrella"), ("connector", "api")]).await;
    assert_eq!(texts(&api).len(), 3);
    assert!(of_type(&api, "customer").is_empty());

    // The merged-away id finds the survivor's whole history, shown under the survivor.
    let mine = search(&app, &[("q", "umbrella"), ("customer", &by_phone)]).await;
    assert_eq!(texts(&mine), ["lost umbrella one", "lost umbrella two"]);
    for i in items(&mine) {
        assert_eq!(i["customer_id"], survivor.as_str(), "{mine}");
    }
    assert_eq!(of_type(&mine, "customer").len(), 1);
    let same = search(&app, &[("q", "umbrella"), ("customer", &survivor)]).await;
    assert_eq!(items(&same).len(), items(&mine).len());
    let nobody = search(&app, &[("q", "umbrella"), ("customer", "no-such-id")]).await;
    assert!(items(&nobody).is_empty());
    app.stop().await;
}
on_both_backends!(
    filters_by_status_connector_and_customer,
    super::filters_by_status_connector_and_customer
);

async fn customers_are_found_by_name_and_by_email(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.send(
        json!({"id": "g1", "thread": "g", "text": "hello", "email": "grace@navy.example",
                    "name": "Grace Hopper", "at": 1_795_000_000}),
    )
    .await;
    app.send(
        json!({"id": "o1", "thread": "o", "text": "unrelated", "email": "other@example.com",
                    "name": "Someone Else", "at": 1_795_000_001}),
    )
    .await;
    app.drain().await;
    let grace = app
        .get_json("/api/v1/customers?email=grace@navy.example")
        .await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let page = search(&app, &[("q", "hopper")]).await;
    let found = items(&page);
    assert_eq!(found.len(), 1, "{page}");
    assert_eq!(found[0]["type"], "customer");
    assert_eq!(found[0]["customer_id"], grace.as_str());
    assert_eq!(found[0]["display_name"], "Grace Hopper");
    assert_eq!(found[0]["snippet"], "Grace <mark>Hopper</mark>");
    assert!(found[0]["rank"].as_f64().is_some());

    let page = search(&app, &[("q", "grace@navy.example")]).await;
    let found = of_type(&page, "customer");
    assert_eq!(found.len(), 1, "{page}");
    assert_eq!(found[0]["customer_id"], grace.as_str());
    assert!(
        found[0]["snippet"]
            .as_str()
            .unwrap()
            .contains("<mark>grace"),
        "{page}"
    );
    // The local part and the domain alone find the address too.
    for q in ["navy.example", "grace"] {
        let page = search(&app, &[("q", q)]).await;
        let found = of_type(&page, "customer");
        assert_eq!(found.len(), 1, "{q}: {page}");
        assert_eq!(found[0]["customer_id"], grace.as_str());
    }
    app.stop().await;
}
on_both_backends!(
    customers_are_found_by_name_and_by_email,
    super::customers_are_found_by_name_and_by_email
);

async fn pagination_walks_every_result_once(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for i in 0..25 {
        let mut ev = json!({"id": format!("p{i}"), "thread": format!("t{i}"),
                            "customer_id": format!("u{i}"), "at": 1_795_000_000 + i / 4,
                            // Some equal texts, so equal ranks must still page cleanly.
                            "text": format!("parcel {}", "late ".repeat(i % 3))});
        if i % 5 == 0 {
            ev["name"] = json!(format!("Parcel Person {i}"));
        }
        assert_eq!(app.send(ev).await.status(), 200);
    }
    app.drain().await;
    let mut seen = Vec::new();
    let mut ranks = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params = vec![("q", "parcel".to_string()), ("limit", "7".to_string())];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = search(&app, &params).await;
        pages += 1;
        for i in items(&page) {
            let key = match i["type"].as_str().unwrap() {
                "message" => format!("m{}", i["entry_id"]),
                _ => format!("c{}", i["customer_id"].as_str().unwrap()),
            };
            seen.push(key);
            ranks.push(i["rank"].as_f64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 30, "25 messages and 5 customers: {seen:?}");
    let mut uniq = seen.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 30, "nothing twice");
    assert!(
        ranks.windows(2).all(|w| w[0] >= w[1]),
        "best first across pages: {ranks:?}"
    );

    // A cursor belongs to its search.
    let first = search(&app, &[("q", "parcel"), ("limit", "7")]).await;
    let c = first["next_cursor"].as_str().unwrap();
    assert_problem(
        search_raw(&app, &[("q", "late"), ("cursor", c)]).await,
        400,
        "invalid_cursor",
    )
    .await;
    assert_problem(
        search_raw(&app, &[("q", "parcel"), ("cursor", "bm9wZQ")]).await,
        400,
        "invalid_cursor",
    )
    .await;
    assert_problem(
        search_raw(&app, &[("q", "parcel"), ("cursor", "%%%")]).await,
        400,
        "invalid_cursor",
    )
    .await;
    app.stop().await;
}
on_both_backends!(
    pagination_walks_every_result_once,
    super::pagination_walks_every_result_once
);

async fn hostile_queries_are_answered_not_500(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.send(
        json!({"id": "h1", "thread": "t", "text": "foo bar baz (quoted) \"x\" 100% o'brien",
                    "email": "h@example.com", "name": "Foo Person", "at": 1_795_000_000}),
    )
    .await;
    app.drain().await;
    let long = "a\" OR (".repeat(28);
    let hostile = [
        "\"foo",
        "foo\"",
        "AND OR (",
        "foo AND OR (",
        "( ) * ^ : + - ~",
        "NEAR(foo bar, 2)",
        "text:foo",
        "{text}: foo",
        "foo*",
        "^foo",
        "'; DROP TABLE timeline_entries; --",
        "\\",
        "\\\"",
        "\"\" OR \"\"",
        "-",
        "--",
        "-foo",
        "foo -",
        "OR",
        "OR OR foo OR",
        "foo & bar | !baz <-> qux",
        "foo:* & !",
        "$1 ?1 :x @y",
        "%_",
        "o'brien",
        "100%",
        "émoji 🦀 ünïcödé",
        "中文 検索",
        "\u{0}\u{1}\u{2}\u{3}",
        long.as_str(),
    ];
    for q in hostile {
        let r = search_raw(&app, &[("q", q)]).await;
        assert_eq!(r.status(), 200, "q={q:?}");
        let page: Value = r.json().await.unwrap();
        assert!(page["items"].is_array(), "q={q:?}: {page}");
    }
    // The words in hostile text still find what they name.
    for q in [
        "\"foo",
        "foo AND OR (",
        "foo*",
        "^foo",
        "o'brien",
        "(quoted)",
    ] {
        let page = search(&app, &[("q", q)]).await;
        assert!(!items(&page).is_empty(), "q={q:?}: {page}");
    }
    for q in ["foo -baz", "foo NOT baz"] {
        let page = search(&app, &[("q", q)]).await;
        assert_eq!(of_type(&page, "message").len(), 0, "q={q:?}: {page}");
        assert_eq!(of_type(&page, "customer").len(), 1, "q={q:?}: {page}");
    }
    let page = search(&app, &[("q", "foo AND baz")]).await;
    assert_eq!(of_type(&page, "message").len(), 1, "{page}");
    app.stop().await;
}
on_both_backends!(
    hostile_queries_are_answered_not_500,
    super::hostile_queries_are_answered_not_500
);

async fn bad_requests_are_400_problems(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let too_long = "x".repeat(201);
    let cases: [&[(&str, &str)]; 4] = [
        &[],
        &[("q", "")],
        &[("q", "   ")],
        &[("q", too_long.as_str())],
    ];
    for q in cases {
        let body = assert_problem(search_raw(&app, q).await, 400, "invalid_query").await;
        assert!(body["detail"].as_str().unwrap().contains("200"), "{body}");
    }
    // 200 characters is fine, even when they are not ASCII.
    assert_eq!(
        search_raw(&app, &[("q", &"é".repeat(200))]).await.status(),
        200
    );
    assert_problem(
        search_raw(&app, &[("q", "x"), ("limit", "0")]).await,
        400,
        "invalid_limit",
    )
    .await;
    assert_problem(
        search_raw(&app, &[("q", "x"), ("limit", "201")]).await,
        400,
        "invalid_limit",
    )
    .await;
    assert_problem(
        search_raw(&app, &[("q", "x"), ("status", "closed")]).await,
        400,
        "invalid_status",
    )
    .await;
    assert_problem(
        search_raw(&app, &[("q", "x"), ("sort", "date")]).await,
        400,
        "unknown_parameter",
    )
    .await;
    app.stop().await;
}
on_both_backends!(
    bad_requests_are_400_problems,
    super::bad_requests_are_400_problems
);

async fn search_requires_a_bearer_token(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let url = format!("{}/api/v1/search?q=hello", app.addr);
    let r = app.client.get(&url).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
    let r = app
        .client
        .get(&url)
        .bearer_auth("sb_not-a-real-token")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;
    // Any role may search.
    let agent =
        switchboard::auth::create_token(&app.store, "agent", switchboard::auth::Role::Agent)
            .await
            .unwrap();
    let r = app
        .client
        .get(&url)
        .bearer_auth(agent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}
on_both_backends!(
    search_requires_a_bearer_token,
    super::search_requires_a_bearer_token
);

async fn the_index_follows_replays_and_updates(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for i in 0..3 {
        app.send(
            json!({"id": format!("r{i}"), "thread": "t", "text": format!("walrus number {i}"),
                        "email": "w@example.com", "at": 1_795_000_000 + i}),
        )
        .await;
    }
    app.drain().await;
    assert_eq!(app.store.enqueue_replay("api", 0).await.unwrap(), 3);
    app.drain().await;
    let page = search(&app, &[("q", "walrus")]).await;
    assert_eq!(items(&page).len(), 3, "a replay adds nothing: {page}");

    // A body rewritten in place (as a replay with a newer normaliser would) is re-indexed.
    exec(
        db,
        &app.db.url,
        "UPDATE timeline_entries SET body = '{\"type\":\"message\",\"text\":\"narwhal instead\"}' \
         WHERE body LIKE '%walrus number 1%'",
    )
    .await;
    assert_eq!(items(&search(&app, &[("q", "walrus")]).await).len(), 2);
    let page = search(&app, &[("q", "narwhal")]).await;
    assert_eq!(items(&page).len(), 1, "{page}");
    assert_eq!(items(&page)[0]["snippet"], "<mark>narwhal</mark> instead");
    exec(
        db,
        &app.db.url,
        "DELETE FROM timeline_entries WHERE body LIKE '%narwhal%'",
    )
    .await;
    assert!(items(&search(&app, &[("q", "narwhal")]).await).is_empty());
    assert_eq!(items(&search(&app, &[("q", "walrus")]).await).len(), 2);

    // Customer names and identity values follow their rows too.
    exec(
        db,
        &app.db.url,
        "UPDATE customers SET display_name = 'Wanda Tusk'",
    )
    .await;
    let page = search(&app, &[("q", "tusk")]).await;
    assert_eq!(of_type(&page, "customer").len(), 1, "{page}");
    exec(
        db,
        &app.db.url,
        "UPDATE customers SET display_name = 'Wanda Fin'",
    )
    .await;
    assert!(items(&search(&app, &[("q", "tusk")]).await).is_empty());
    assert_eq!(
        of_type(&search(&app, &[("q", "fin")]).await, "customer").len(),
        1
    );
    exec(
        db,
        &app.db.url,
        "UPDATE identities SET value = 'tusk@example.com'",
    )
    .await;
    assert!(of_type(&search(&app, &[("q", "w@example.com")]).await, "customer").is_empty());
    assert_eq!(
        of_type(
            &search(&app, &[("q", "tusk@example.com")]).await,
            "customer"
        )
        .len(),
        1
    );
    if db == Db::Sqlite {
        // External-content FTS5 tables must agree with their content exactly.
        for t in ["search_entries", "search_identities", "search_names"] {
            exec(
                db,
                &app.db.url,
                &format!("INSERT INTO {t} ({t}) VALUES ('integrity-check')"),
            )
            .await;
        }
    }
    app.stop().await;
}
on_both_backends!(
    the_index_follows_replays_and_updates,
    super::the_index_follows_replays_and_updates
);

/// Undoes migration 3, as if the data predated it.
const UNDO_SQLITE: &str = "\
DROP TRIGGER search_entries_insert; DROP TRIGGER search_entries_delete; DROP TRIGGER search_entries_update;
DROP TRIGGER IF EXISTS search_identities_insert; DROP TRIGGER search_identities_delete; DROP TRIGGER search_identities_update;
DROP TRIGGER search_names_insert; DROP TRIGGER search_names_set; DROP TRIGGER search_names_change; DROP TRIGGER search_names_delete;
DROP TABLE search_entries; DROP VIEW search_entry_text; DROP TABLE search_identities; DROP TABLE search_names;
DELETE FROM schema_migrations WHERE version = 3;";
const UNDO_POSTGRES: &str = "\
ALTER TABLE timeline_entries DROP COLUMN search_tsv;
DROP INDEX customers_search; DROP INDEX identities_search;
DELETE FROM schema_migrations WHERE version = 3;";

async fn the_migration_indexes_existing_history(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.send(
        json!({"id": "b1", "thread": "t", "text": "an ancient quokka sighting",
                    "email": "kim@quokka.example", "name": "Kim Marsupial", "at": 1_500_000_000}),
    )
    .await;
    app.drain().await;
    let tdb = app.stop().await;
    exec(
        db,
        &tdb.url,
        match db {
            Db::Sqlite => UNDO_SQLITE,
            Db::Postgres => UNDO_POSTGRES,
        },
    )
    .await;

    let store = Store::connect(&common::settings(&tdb.url).database)
        .await
        .unwrap();
    assert_eq!(store.migrate().await.unwrap(), [3]);
    let find = |q: &str| {
        let store = store.clone();
        let terms = SearchTerms::parse(q);
        async move {
            store
                .search(
                    &terms,
                    &SearchFilter {
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
        }
    };
    let hits = find("quokka").await;
    assert!(
        hits.iter().any(|h| matches!(h, SearchHit::Message { .. })),
        "{hits:?}"
    );
    let hits = find("kim@quokka.example").await;
    assert!(
        matches!(&hits[..], [SearchHit::Customer { .. }]),
        "the email: {hits:?}"
    );
    let hits = find("marsupial").await;
    assert!(
        matches!(&hits[..], [SearchHit::Customer { display_name: Some(n), .. }] if n == "Kim Marsupial"),
        "{hits:?}"
    );
    store.close().await;
}
on_both_backends!(
    the_migration_indexes_existing_history,
    super::the_migration_indexes_existing_history
);

/// Undoes migration 14, as if the data predated it: SQLite's rowid customers table, the old
/// identity indexes and the trigger that indexed new identities.
const UNDO_14_SQLITE: &str = "\
PRAGMA foreign_keys = OFF;
CREATE TABLE customers_old (id TEXT PRIMARY KEY, canonical_id TEXT NOT NULL, display_name TEXT,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
INSERT INTO customers_old SELECT id, canonical_id, display_name, created_at, updated_at FROM customers;
DROP TABLE customers;
ALTER TABLE customers_old RENAME TO customers;
CREATE INDEX customers_canonical ON customers (canonical_id);
DROP INDEX identities_match; CREATE INDEX identities_match ON identities (match_key);
DROP INDEX identities_customer; CREATE INDEX identities_customer ON identities (customer_id);
CREATE INDEX identities_kind_value ON identities (kind, value);
CREATE TRIGGER search_identities_insert AFTER INSERT ON identities
BEGIN INSERT INTO search_identities (rowid, value) VALUES (new.id, new.value); END;
DELETE FROM schema_migrations WHERE version = 14;";
const UNDO_14_POSTGRES: &str = "\
DROP INDEX identities_match; CREATE INDEX identities_match ON identities (match_key);
CREATE INDEX identities_kind_value ON identities (kind, value);
DELETE FROM schema_migrations WHERE version = 14;";

/// Migration 14 rebuilds SQLite's customers table and moves the search indexing of new
/// identities from a trigger to the pipeline: customers, names and identities from before
/// are still found, new ones are found once (not twice), merges still work, and identities
/// still refer to existing customers only.
async fn the_identity_read_migration_keeps_customers_found_and_referenced(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.send(
        json!({"id": "w1", "thread": "t1", "text": "hello from before",
                    "email": "olga@wombat.example", "name": "Olga Wombat", "at": 1_600_000_000}),
    )
    .await;
    app.drain().await;
    let tdb = app.stop().await;
    let undo = match db {
        Db::Sqlite => UNDO_14_SQLITE,
        Db::Postgres => UNDO_14_POSTGRES,
    };
    exec(db, &tdb.url, undo).await;
    let store = Store::connect(&common::settings(&tdb.url).database)
        .await
        .unwrap();
    assert_eq!(store.migrate().await.unwrap(), [14]);
    store.close().await;

    let app = spawn_app_on(tdb, |_| {}).await;
    // Then: the old customer is found by name and by email, once.
    for q in ["wombat", "olga@wombat.example"] {
        let page = search(&app, &[("q", q)]).await;
        let found = of_type(&page, "customer");
        assert_eq!(found.len(), 1, "{q}: {page}");
        assert_eq!(found[0]["display_name"], "Olga Wombat", "{q}: {page}");
    }
    // A new customer after the migration, with an email: found by it, once.
    app.send(
        json!({"id": "w2", "thread": "t2", "text": "hello from after",
                    "email": "ned@numbat.example", "name": "Ned Numbat", "at": 1_600_000_100}),
    )
    .await;
    // A customer known only by a phone, then an event with Ned's email and that phone: a
    // merge (an update of the rebuilt table) into Ned.
    app.send(json!({"id": "w3", "thread": "t3", "text": "phone only",
                    "phone": "+14155550134", "at": 1_600_000_150}))
        .await;
    app.drain().await;
    app.send(json!({"id": "w4", "thread": "t4", "text": "both of us",
                    "email": "ned@numbat.example", "phone": "+14155550134", "at": 1_600_000_200}))
        .await;
    app.drain().await;
    let page = search(&app, &[("q", "ned@numbat.example")]).await;
    let found = of_type(&page, "customer");
    assert_eq!(found.len(), 1, "{page}");
    assert_eq!(found[0]["display_name"], "Ned Numbat", "{page}");
    let by_phone = app.get_json("/api/v1/customers?phone=%2B14155550134").await;
    let ned = found[0]["customer_id"].as_str().unwrap();
    assert_eq!(
        by_phone["items"][0]["id"], ned,
        "merged into Ned: {by_phone}"
    );
    let page = search(&app, &[("q", "numbat")]).await;
    assert_eq!(
        of_type(&page, "customer").len(),
        1,
        "once after the merge: {page}"
    );
    // Identities still refer to existing customers only.
    let bad = match db {
        Db::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            let r = sqlx::query(
                "INSERT INTO identities (ident_key, customer_id, kind, scope, value, connector_id, first_seen, last_seen) \
                 VALUES ('email\u{1f}\u{1f}x@y.example', 'no-such-customer', 'email', '', 'x@y.example', 'web', 1, 1)",
            )
            .execute(&mut c)
            .await;
            c.close().await.ok();
            r.map(|_| ())
        }
        Db::Postgres => {
            let mut c = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            let r = sqlx::query(
                "INSERT INTO identities (ident_key, customer_id, kind, scope, value, connector_id, first_seen, last_seen) \
                 VALUES ('email:x@y.example', 'no-such-customer', 'email', '', 'x@y.example', 'web', 1, 1)",
            )
            .execute(&mut c)
            .await;
            c.close().await.ok();
            r.map(|_| ())
        }
    };
    assert!(bad.is_err(), "an identity of no customer was accepted");
    app.stop().await;
}
on_both_backends!(
    the_identity_read_migration_keeps_customers_found_and_referenced,
    super::the_identity_read_migration_keeps_customers_found_and_referenced
);

/// Stores `n` messages through the hub's own write path (raw events + pipeline), faster than
/// one webhook each: `text(i)` is message i's text, message i happened at second `1.795e9 + i`.
async fn store_messages(app: &TestApp, n: usize, text: impl Fn(usize) -> String) {
    let now = switchboard::store::now_ms();
    let events: Vec<NewRawEvent> = (0..n)
        .map(|i| {
            let body = json!({"id": format!("bulk-{i}"), "thread": format!("bulk-{}", i % 50),
                              "email": format!("bulk{}@example.com", i % 50),
                              "at": 1_795_000_000 + i as i64, "text": text(i)});
            NewRawEvent {
                connector_id: "api".into(),
                provider_event_id: format!("bulk-{i}"),
                kind: "message".into(),
                occurred_at: None,
                received_at: now,
                headers: "[]".into(),
                payload: serde_json::to_vec(&body).unwrap().into(),
            }
        })
        .collect();
    for chunk in events.chunks(500) {
        app.store.insert_raw_events(chunk).await.unwrap();
    }
    app.drain().await;
}

async fn a_query_with_a_common_word_comes_back_newest_first(db: Db) {
    // Only `drain` runs the pipeline here, batch after batch in arrival order, so entry ids
    // follow the message numbers (a background worker racing it could store a later batch
    // first, and "newest" is the most recently stored entry).
    let Some(app) = spawn_app_with(db, |s| s.pipeline.enabled = false).await else {
        return;
    };
    // "parcel" is in more entries than RANKED_MAX; "parcel parcel parcel" (the oldest) would
    // rank first if they were ranked. "quokka" is rare: in four of them.
    let n = RANKED_MAX as usize + 30;
    store_messages(&app, n, |i| match i {
        0 => "parcel parcel parcel quokka quokka".into(),
        _ if i % 1000 == 1 => format!("where is my parcel {i} quokka"),
        _ => format!("parcel number {i} is late"),
    })
    .await;
    app.send(
        json!({"id": "named", "thread": "n", "email": "p@example.com",
                    "name": "Parcel Jones", "text": "hello"}),
    )
    .await;
    app.drain().await;

    let page = search(&app, &[("q", "parcel"), ("limit", "20")]).await;
    let found = items(&page);
    assert_eq!(found.len(), 20, "{page}");
    // The customer first (ranked among customers), then entries newest first, rank 0.
    assert_eq!(found[0]["type"], "customer", "{page}");
    assert!(found[0]["rank"].as_f64().unwrap() > 0.0, "{page}");
    let entries: Vec<&Value> = found[1..].iter().collect();
    assert!(
        entries
            .iter()
            .all(|e| e["type"] == "message" && e["rank"] == 0.0),
        "{page}"
    );
    let ids: Vec<i64> = entries
        .iter()
        .map(|e| e["entry_id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert!(
        entries[0]["snippet"]
            .as_str()
            .unwrap()
            .contains(&format!("number {} is late", n - 1)),
        "the newest: {page}"
    );
    // The next page goes on where this one stopped.
    let next = search(
        &app,
        &[
            ("q", "parcel"),
            ("limit", "20"),
            ("cursor", page["next_cursor"].as_str().unwrap()),
        ],
    )
    .await;
    let next_ids: Vec<i64> = items(&next)
        .iter()
        .map(|e| e["entry_id"].as_i64().unwrap())
        .collect();
    assert_eq!(next_ids.len(), 20);
    assert!(
        next_ids[0] < *ids.last().unwrap(),
        "{ids:?} then {next_ids:?}"
    );
    assert!(next_ids.windows(2).all(|w| w[0] > w[1]), "{next_ids:?}");

    // A common word with a rare one: still newest first (the common word's count decides).
    let both = items(&search(&app, &[("q", "parcel quokka")]).await);
    assert_eq!(both.len(), 4, "{both:?}");
    assert!(both.iter().all(|e| e["rank"] == 0.0), "{both:?}");
    // A phrase of common words is newest first even when the phrase itself is rare: finding
    // its few matches reads the words' whole position lists, and ranking them would again.
    let phrase = items(&search(&app, &[("q", "\"parcel parcel\"")]).await);
    assert_eq!(phrase.len(), 1, "{phrase:?}");
    assert_eq!(phrase[0]["rank"], 0.0, "{phrase:?}");
    // The rare word alone is ranked over its every match: the oldest entry, the only one
    // that says "quokka" twice, is first.
    let rare = items(&search(&app, &[("q", "quokka")]).await);
    assert_eq!(rare.len(), 4, "{rare:?}");
    assert!(
        rare.iter().all(|e| e["rank"].as_f64().unwrap() > 0.0),
        "{rare:?}"
    );
    assert!(
        rare[0]["snippet"]
            .as_str()
            .unwrap()
            .starts_with("parcel parcel parcel"),
        "{rare:?}"
    );

    // The hub remembers that "parcel" is common (for a minute): with all but four of its
    // entries gone (the newest entry, "hello", is kept too), they still come back newest
    // first, without a count. Once forgotten, the count decides and the four are ranked.
    let url = app.db.url.clone();
    exec(
        db,
        &url,
        "DELETE FROM timeline_entries WHERE id NOT IN \
         (SELECT id FROM timeline_entries ORDER BY id DESC LIMIT 5)",
    )
    .await;
    if db == Db::Postgres {
        // Planner statistics (from an autovacuum run, say) would say common too.
        exec(
            db,
            &url,
            "DELETE FROM pg_statistic WHERE starelid = 'timeline_entries'::regclass",
        )
        .await;
    }
    let remembered = items(&search(&app, &[("q", "parcel")]).await);
    let entries: Vec<&Value> = remembered
        .iter()
        .filter(|e| e["type"] == "message")
        .collect();
    assert_eq!(entries.len(), 4, "{remembered:?}");
    assert!(entries.iter().all(|e| e["rank"] == 0.0), "{remembered:?}");
    app.store.forget_common_words();
    let counted = items(&search(&app, &[("q", "parcel")]).await);
    let entries: Vec<&Value> = counted.iter().filter(|e| e["type"] == "message").collect();
    assert_eq!(entries.len(), 4, "{counted:?}");
    assert!(
        entries.iter().all(|e| e["rank"].as_f64().unwrap() > 0.0),
        "{counted:?}"
    );
    app.stop().await;
}
on_both_backends!(
    a_query_with_a_common_word_comes_back_newest_first,
    super::a_query_with_a_common_word_comes_back_newest_first
);

/// PostgreSQL: a word its statistics list as common comes back newest first without its
/// matches being counted (a GIN count reads every match). Proven with stale statistics:
/// analyzed while "parcel" was in more than RANKED_MAX entries, then all but five of them
/// deleted. With the statistics gone, the count decides and the five are ranked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statistics_mark_a_word_common_without_counting_it() {
    let Some(app) = spawn_app_with(Db::Postgres, |s| s.pipeline.enabled = false).await else {
        return;
    };
    store_messages(&app, RANKED_MAX as usize + 30, |i| {
        format!("parcel number {i} is late")
    })
    .await;
    let url = app.db.url.clone();
    exec(Db::Postgres, &url, "ANALYZE timeline_entries").await;
    exec(
        Db::Postgres,
        &url,
        "DELETE FROM timeline_entries WHERE id NOT IN \
         (SELECT id FROM timeline_entries ORDER BY id DESC LIMIT 5)",
    )
    .await;
    let stale = items(&search(&app, &[("q", "parcel")]).await);
    assert_eq!(stale.len(), 5, "{stale:?}");
    assert!(stale.iter().all(|e| e["rank"] == 0.0), "{stale:?}");

    exec(
        Db::Postgres,
        &url,
        "DELETE FROM pg_statistic WHERE starelid = 'timeline_entries'::regclass",
    )
    .await;
    // The hub remembers a word's answer for a minute; this test changed it under it.
    app.store.forget_common_words();
    let counted = items(&search(&app, &[("q", "parcel")]).await);
    assert_eq!(counted.len(), 5, "{counted:?}");
    assert!(
        counted.iter().all(|e| e["rank"].as_f64().unwrap() > 0.0),
        "{counted:?}"
    );
    app.stop().await;
}

/// SQLite: once nothing has been written for `database.search_merge_idle_secs`, the hub
/// merges each search index into one segment (FTS5 leaves one per transaction until it has
/// four of a size), and search finds the same as before.
#[tokio::test]
async fn an_idle_hub_merges_each_search_index_into_one_segment() {
    let Some(app) = spawn_app_with(Db::Sqlite, |s| {
        s.database.search_merge_idle_secs = 1;
        s.pipeline.enabled = false;
    })
    .await
    else {
        return;
    };
    // Three batches, each stored in its own transactions: segments in every index.
    for batch in 0..3 {
        for i in 0..4 {
            app.send(
                json!({"id": format!("b{batch}m{i}"), "thread": format!("t{batch}{i}"),
                            "email": format!("keeper{batch}{i}@example.com"),
                            "name": format!("Keeper {batch}{i}"),
                            "text": format!("upkeep message {batch} {i}")}),
            )
            .await;
        }
        app.drain().await;
    }
    let before = app.store.search_segments().await.unwrap();
    assert!(before > 3, "segments before: {before}");
    let messages = search(&app, &[("q", "upkeep"), ("limit", "50")]).await;
    let people = search(&app, &[("q", "keeper"), ("limit", "50")]).await;
    assert_eq!(of_type(&messages, "message").len(), 12, "{messages}");
    assert_eq!(of_type(&people, "customer").len(), 12, "{people}");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let n = app.store.search_segments().await.unwrap();
        if n <= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {n} segments (from {before}) 30 s after the last write"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        search(&app, &[("q", "upkeep"), ("limit", "50")]).await,
        messages
    );
    assert_eq!(
        search(&app, &[("q", "keeper"), ("limit", "50")]).await,
        people
    );
    app.stop().await;
}
