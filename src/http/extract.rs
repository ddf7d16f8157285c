//! A JSON body extractor whose errors are problem+json naming the field.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::problem::Problem;

/// Request bodies of the API are small; larger ones are refused before parsing.
const MAX_API_BODY: usize = 256 * 1024;

pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Problem> {
        let bytes = axum::body::to_bytes(Body::new(req.into_body()), MAX_API_BODY)
            .await
            .map_err(|_| {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    Some(format!("body exceeds {MAX_API_BODY} bytes")),
                )
            })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let parsed = serde_path_to_error::deserialize::<_, T>(&mut de);
        if parsed.is_ok() {
            if let Err(e) = de.end() {
                return Err(Problem::bad_request(
                    "malformed_json",
                    format!("request body is not valid JSON: {e}"),
                ));
            }
        }
        match parsed {
            Ok(v) => Ok(ValidJson(v)),
            Err(e) => {
                let field = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    Err(Problem::bad_request(
                        "malformed_json",
                        format!("request body is not valid JSON: {inner}"),
                    ))
                } else {
                    let field = if field == "." {
                        "body".to_string()
                    } else {
                        field
                    };
                    Err(Problem::invalid(
                        &field,
                        "invalid_field",
                        format!("{field}: {inner}"),
                    ))
                }
            }
        }
    }
}
