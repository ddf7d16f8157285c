//! The OpenAPI document: served, 3.1, self-consistent, and every operation it lists is one
//! the server really answers (and asks a token for).

mod common;

use common::{spawn_app, Db};

fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                }
                refs(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

async fn the_document_lists_every_route_the_server_answers(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let r = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // Every $ref points at a schema that exists.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected ref {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {r}"
        );
    }

    // Every documented operation exists: without a token it is a 401 problem, never 404/405.
    let paths = doc["paths"].as_object().unwrap();
    let mut ops = 0;
    for (path, item) in paths {
        for method in ["get", "post", "patch", "delete", "put"] {
            let Some(op) = item.get(method) else { continue };
            ops += 1;
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
            let url = format!("{}{}", app.addr, path.replace('{', "x").replace('}', ""));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = app.client.request(m, &url).send().await.unwrap();
            assert_eq!(
                resp.status(),
                401,
                "{method} {path} answered {}",
                resp.status()
            );
            assert!(
                op["responses"].get("401").is_some(),
                "{method} {path} does not document its 401"
            );
        }
    }
    for p in [
        "/api/v1/conversations",
        "/api/v1/conversations/{id}",
        "/api/v1/conversations/{id}/replies",
        "/api/v1/customers/{id}/timeline",
        "/api/v1/agents",
        "/api/v1/tokens/{id}",
        "/api/v1/saved-replies",
        "/api/v1/search",
        "/api/v1/events",
        "/api/v1/webhook-subscriptions",
        "/api/v1/webhook-subscriptions/{id}/deliveries/{delivery_id}/replay",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(ops >= 34, "only {ops} operations documented");
    // Both methods on one path are kept (GET and PATCH /conversations/{id}).
    assert!(paths["/api/v1/conversations/{id}"].get("get").is_some());
    assert!(paths["/api/v1/conversations/{id}"].get("patch").is_some());
    app.stop().await;
}
on_both_backends!(
    the_document_lists_every_route_the_server_answers,
    super::the_document_lists_every_route_the_server_answers
);

/// Found by schemathesis: every operation that takes a JSON body answered an empty or broken
/// body with a 400 (and an oversized one with 413) that its document did not list, and `limit`
/// was an unbounded integer though the API refuses anything outside 1..=200. Each answer
/// must be one the document describes, as problem+json.
async fn malformed_bodies_and_out_of_range_limits_get_documented_problems(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let doc: serde_json::Value = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut bodies = 0;
    let mut limits = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = format!("{}{}", app.addr, path.replace('{', "x").replace('}', ""));
        for (method, op) in item.as_object().unwrap() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut tries = Vec::new();
            if op.get("requestBody").is_some() {
                bodies += 1;
                tries.push(app.client.request(m.clone(), &url).body("{not json"));
            }
            let limit = op["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == "limit"));
            if let Some(p) = limit {
                limits += 1;
                assert_eq!(p["schema"]["minimum"], 1, "{method} {path}");
                assert_eq!(p["schema"]["maximum"], 200, "{method} {path}");
                tries.push(app.client.request(m.clone(), format!("{url}?limit=201")));
            }
            for req in tries {
                let resp = req.bearer_auth(&app.token).send().await.unwrap();
                let status = resp.status().as_u16();
                assert!(
                    op["responses"].get(status.to_string()).is_some(),
                    "{method} {path} answered an undocumented {status}"
                );
                assert!((400..500).contains(&status), "{method} {path}: {status}");
                assert_eq!(
                    resp.headers()["content-type"],
                    "application/problem+json",
                    "{method} {path}"
                );
            }
        }
    }
    assert!(bodies >= 14, "only {bodies} operations take a body");
    assert!(limits >= 10, "only {limits} operations take a limit");
    app.stop().await;
}
on_both_backends!(
    malformed_bodies_and_out_of_range_limits_get_documented_problems,
    super::malformed_bodies_and_out_of_range_limits_get_documented_problems
);
