//! A fake provider HTTP server on 127.0.0.1 for tests (feature `fake`): it records every
//! request and answers each `(method, path)` from a script, so a connector's client can be
//! driven through the provider's documented answers — success, 429 with Retry-After, 5xx,
//! auth errors, slow long polls — without leaving the machine.
//!
//! Answers for one route are consumed in order; the last one repeats. A route with no
//! script answers 404 with a JSON body.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Waits this long before answering (a long poll, or a provider that hangs).
    pub delay: Duration,
}

impl Answer {
    /// 200 with a JSON body.
    pub fn json(body: serde_json::Value) -> Answer {
        Answer::status_json(200, body)
    }

    pub fn status_json(status: u16, body: serde_json::Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }

    pub fn status(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn delayed(mut self, d: Duration) -> Answer {
        self.delay = d;
        self
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as `application/x-www-form-urlencoded` pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded(&self.body)
    }

    /// A query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        form_urlencoded(q.as_bytes())
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn form_urlencoded(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

#[derive(Default)]
struct Inner {
    script: HashMap<(Method, String), VecDeque<Answer>>,
    received: Vec<Recorded>,
}

/// A running fake provider. `base` is its URL (`http://127.0.0.1:PORT`), for `api_base`.
#[derive(Clone)]
pub struct FakeProvider {
    inner: Arc<Mutex<Inner>>,
    pub base: String,
}

impl FakeProvider {
    pub async fn start() -> FakeProvider {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake provider on 127.0.0.1");
        let base = format!(
            "http://{}",
            listener.local_addr().expect("fake provider address")
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeProvider { inner, base }
    }

    /// Appends answers for `method path` (path without the query string).
    pub fn on(&self, method: &str, path: &str, answers: impl IntoIterator<Item = Answer>) {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut i = self.inner.lock().expect("fake provider lock");
        i.script
            .entry((method, path.to_string()))
            .or_default()
            .extend(answers);
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Recorded> {
        self.inner
            .lock()
            .expect("fake provider lock")
            .received
            .clone()
    }

    /// The requests to one path.
    pub fn received_on(&self, path: &str) -> Vec<Recorded> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `n` requests reached `path` (or `timeout` passes); returns them.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received_on(path);
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let answer = {
        let mut i = match inner.lock() {
            Ok(i) => i,
            Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        };
        i.received.push(Recorded {
            at: Instant::now(),
            method: parts.method.clone(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers.clone(),
            body,
        });
        match i.script.get_mut(&(parts.method.clone(), path.clone())) {
            Some(q) if q.len() > 1 => q.pop_front(),
            Some(q) => q.front().cloned(),
            None => None,
        }
    };
    let Some(a) = answer else {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "application/json")],
            format!(
                r#"{{"error":"no fake answer for {} {}"}}"#,
                parts.method, path
            ),
        )
            .into_response();
    };
    if !a.delay.is_zero() {
        tokio::time::sleep(a.delay).await;
    }
    let mut resp = (
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK),
        a.body,
    )
        .into_response();
    for (k, v) in a.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_handles_plus_percent_and_bad_escapes() {
        let pairs = form_urlencoded(b"Body=Hello+there%21&From=%2B14155550100&Bad=%zz&Trail=%4");
        assert_eq!(pairs[0], ("Body".into(), "Hello there!".into()));
        assert_eq!(pairs[1], ("From".into(), "+14155550100".into()));
        assert_eq!(pairs[2], ("Bad".into(), "%zz".into()));
        assert_eq!(pairs[3], ("Trail".into(), "%4".into()));
    }
}
