//! A fake reply receiver on 127.0.0.1 for the generic connector's `reply_url`: it records
//! every request and answers as told (200, 429 with Retry-After, 500, or never).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    RateLimited {
        retry_after_secs: u64,
    },
    ServerError,
    /// A permanent refusal, e.g. outside a messaging window.
    Rejected,
    Hang,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Answer>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
}

impl Receiver {
    /// Answers follow `script` in order, then 200 for every later request.
    pub async fn start(script: &[Answer]) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            script: script.iter().copied().collect(),
            received: Vec::new(),
        }));
        let app = Router::new()
            .route("/replies", post(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/replies", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { inner, url }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = {
        let mut i = inner.lock().unwrap();
        i.received.push(Received {
            at: Instant::now(),
            headers,
            body: body.clone(),
        });
        i.script.pop_front().unwrap_or(Answer::Ok)
    };
    match answer {
        Answer::Ok => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = format!("prov-{}", v["id"].as_str().unwrap_or("?"));
            (StatusCode::OK, axum::Json(serde_json::json!({ "id": id }))).into_response()
        }
        Answer::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after_secs.to_string())],
            "slow down",
        )
            .into_response(),
        Answer::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Answer::Rejected => (
            StatusCode::BAD_REQUEST,
            "outside the 24 hour messaging window",
        )
            .into_response(),
        Answer::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}
