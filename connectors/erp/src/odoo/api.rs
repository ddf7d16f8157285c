//! Odoo's external API: `search_read` over JSON-2 (Odoo 19+) or JSON-RPC `execute_kw`
//! (older servers), with the answer's records kept as exact bytes.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use switchboard_core::http_client::{retry_after, status_error, transport_error};
use switchboard_core::ConnectorError;

use super::config::{ApiKind, Settings};

/// Records per page: Odoo's own web client pages by 80; 200 keeps requests small and few.
pub const LIMIT: usize = 200;

pub struct Api {
    /// The connector id, for log lines.
    pub id: String,
    pub s: Arc<Settings>,
    pub client: reqwest::Client,
    /// Set once a JSON-2 call answered 404: the server predates JSON-2.
    use_jsonrpc: AtomicBool,
    /// The uid `common.authenticate` gave, 0 until then (JSON-RPC only).
    uid: AtomicI64,
}

/// A search_read answer: the records' array as the server sent it.
pub struct Records(pub Box<RawValue>);

impl Records {
    pub fn items(&self) -> Result<Vec<&RawValue>, ConnectorError> {
        serde_json::from_str(self.0.get()).map_err(|_| {
            ConnectorError::Transient("search_read: the result is not an array of records".into())
        })
    }
}

#[derive(Deserialize)]
struct RpcAnswer {
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<Value>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Api {
    pub fn new(id: &str, s: Arc<Settings>, client: reqwest::Client) -> Api {
        let use_jsonrpc = AtomicBool::new(s.api == ApiKind::Jsonrpc);
        Api {
            id: id.to_string(),
            s,
            client,
            use_jsonrpc,
            uid: AtomicI64::new(0),
        }
    }

    /// Whether calls go over JSON-RPC (configured, or after JSON-2 answered 404).
    pub fn uses_jsonrpc(&self) -> bool {
        self.use_jsonrpc.load(Relaxed)
    }

    /// `model.search_read(domain, fields, order, limit)`.
    pub async fn search_read(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
    ) -> Result<Records, ConnectorError> {
        if !self.uses_jsonrpc() {
            match self.json2(model, &domain, fields).await? {
                Some(r) => return Ok(r),
                None => {
                    self.use_jsonrpc.store(true, Relaxed);
                    tracing::warn!(
                        connector_id = %self.id,
                        kind = "odoo",
                        model,
                        "JSON-2 answered 404: the server predates Odoo 19; using JSON-RPC from now on"
                    );
                }
            }
        }
        self.jsonrpc_search_read(model, &domain, fields).await
    }

    /// `None` when the server has no JSON-2 endpoint (404).
    async fn json2(
        &self,
        model: &str,
        domain: &Value,
        fields: &[&str],
    ) -> Result<Option<Records>, ConnectorError> {
        let url = format!("{}/json/2/{model}/search_read", self.s.api_base);
        let body = json!({
            "domain": domain,
            "fields": fields,
            "order": "write_date asc, id asc",
            "limit": LIMIT,
        });
        let resp = self
            .client
            .post(url)
            .header(
                "authorization",
                format!("bearer {}", self.s.api_key.expose()),
            )
            .header("x-odoo-database", &self.s.database)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let after = retry_after(resp.headers(), now());
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(status_error(status, after, &json2_reason(&bytes)));
        }
        let raw: Box<RawValue> = serde_json::from_slice(&bytes)
            .map_err(|_| ConnectorError::Transient("search_read: the answer is not JSON".into()))?;
        Ok(Some(Records(raw)))
    }

    async fn rpc(
        &self,
        service: &str,
        method: &str,
        args: Value,
    ) -> Result<Box<RawValue>, ConnectorError> {
        let body = json!({
            "jsonrpc": "2.0",
            "method": "call",
            "params": {"service": service, "method": method, "args": args},
            "id": 1,
        });
        let resp = self
            .client
            .post(format!("{}/jsonrpc", self.s.api_base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let after = retry_after(resp.headers(), now());
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, after, &json2_reason(&bytes)));
        }
        let answer: RpcAnswer = serde_json::from_slice(&bytes).map_err(|_| {
            ConnectorError::Transient(format!("{service}.{method}: the answer is not JSON-RPC"))
        })?;
        if let Some(e) = answer.error {
            return Err(rpc_error(&e));
        }
        answer.result.ok_or_else(|| {
            ConnectorError::Transient(format!("{service}.{method}: the answer has no result"))
        })
    }

    /// The uid of the API key's user, asked once and cached.
    async fn uid(&self) -> Result<i64, ConnectorError> {
        let cached = self.uid.load(Relaxed);
        if cached > 0 {
            return Ok(cached);
        }
        let result = self
            .rpc(
                "common",
                "authenticate",
                json!(
                    [self.s.database, self.s.username, self.s.api_key.expose(), {
                    }]
                ),
            )
            .await?;
        // `false` when the login or key is wrong.
        match serde_json::from_str::<Value>(result.get())
            .ok()
            .and_then(|v| v.as_i64())
        {
            Some(uid) if uid > 0 => {
                self.uid.store(uid, Relaxed);
                Ok(uid)
            }
            _ => Err(ConnectorError::Unauthorized(
                "authenticate refused the username or API key".into(),
            )),
        }
    }

    async fn jsonrpc_search_read(
        &self,
        model: &str,
        domain: &Value,
        fields: &[&str],
    ) -> Result<Records, ConnectorError> {
        let uid = self.uid().await?;
        let args = json!([
            self.s.database,
            uid,
            self.s.api_key.expose(),
            model,
            "search_read",
            [domain],
            {"fields": fields, "order": "write_date asc, id asc", "limit": LIMIT},
        ]);
        match self.rpc("object", "execute_kw", args).await {
            Ok(r) => Ok(Records(r)),
            Err(e @ ConnectorError::Unauthorized(_)) => {
                // The key may have been rotated: authenticate again next time.
                self.uid.store(0, Relaxed);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

/// The short reason from a JSON-2 error body `{"name","message",…}` (never its `debug`
/// traceback), or the body's start when it is not one.
fn json2_reason(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        let message = v.get("message").and_then(Value::as_str).unwrap_or("");
        if !message.is_empty() {
            return if name.is_empty() {
                message.to_string()
            } else {
                format!("{message} ({name})")
            };
        }
    }
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// A JSON-RPC error object `{"code","message","data":{"name","message",…}}` → its kind:
/// access errors refuse the connector, database contention is worth retrying, anything else
/// (a bad domain, a missing field or model) needs a person.
pub fn rpc_error(e: &Value) -> ConnectorError {
    let data = e.get("data").unwrap_or(&Value::Null);
    let name = data.get("name").and_then(Value::as_str).unwrap_or("");
    let message = data
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| e.get("message").and_then(Value::as_str))
        .unwrap_or("error");
    let message: String = message.chars().take(300).collect();
    let reason = if name.is_empty() {
        message
    } else {
        format!("{message} ({name})")
    };
    let code = e.get("code").and_then(Value::as_i64).unwrap_or(0);
    if name.contains("AccessDenied")
        || name.contains("AccessError")
        || name.contains("SessionExpired")
        || code == 100
    {
        ConnectorError::Unauthorized(reason)
    } else if name.contains("OperationalError")
        || name.contains("SerializationFailure")
        || name.contains("LockNotAvailable")
        || name.contains("TransactionRollback")
        || name.contains("ServiceUnavailable")
    {
        ConnectorError::Transient(reason)
    } else {
        ConnectorError::Permanent(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_map_to_kinds() {
        let denied = json!({"code": 200, "message": "Odoo Server Error",
            "data": {"name": "odoo.exceptions.AccessDenied", "message": "Access Denied", "debug": "Traceback …"}});
        assert_eq!(
            rpc_error(&denied),
            ConnectorError::Unauthorized("Access Denied (odoo.exceptions.AccessDenied)".into())
        );
        let busy = json!({"code": 200, "message": "Odoo Server Error",
            "data": {"name": "psycopg2.errors.SerializationFailure", "message": "could not serialize access"}});
        assert!(matches!(rpc_error(&busy), ConnectorError::Transient(_)));
        let bad = json!({"code": 200, "message": "Odoo Server Error",
            "data": {"name": "builtins.ValueError", "message": "Invalid field 'x' on model 'res.partner'"}});
        assert!(
            matches!(rpc_error(&bad), ConnectorError::Permanent(r) if r.contains("Invalid field"))
        );
        assert!(matches!(
            rpc_error(&json!({"code": 100, "message": "Odoo Session Expired"})),
            ConnectorError::Unauthorized(_)
        ));
    }

    #[test]
    fn json2_reason_is_the_message_never_the_traceback() {
        let body = br#"{"name":"werkzeug.exceptions.Unauthorized","message":"Invalid apikey","arguments":["Invalid apikey",401],"context":{},"debug":"Traceback (most recent call last) secret stuff"}"#;
        let r = json2_reason(body);
        assert_eq!(r, "Invalid apikey (werkzeug.exceptions.Unauthorized)");
    }
}
