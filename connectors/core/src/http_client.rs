//! Shared plumbing for connectors that call a provider's HTTP API: one client builder and one
//! mapping from HTTP outcomes to `ConnectorError`, so every connector retries the same way.

use std::time::Duration;

use crate::error::ConnectorError;

/// A client with rustls, a total timeout per request, and no redirects (a provider that
/// redirects an API call is misconfigured, and following it could leak credentials).
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// `Retry-After` as seconds or an HTTP date, relative to `now` (unix seconds); capped at a day.
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: i64) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?.timestamp();
            (at - now).max(0) as u64
        }
    };
    Some(Duration::from_secs(secs.min(86_400)))
}

/// A transport failure (connect, timeout, reset) is always worth retrying.
pub fn transport_error(e: &reqwest::Error) -> ConnectorError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    ConnectorError::Transient(what.to_string())
}

/// Maps a non-success HTTP answer: 429 → rate limited (with Retry-After), 408/425/5xx →
/// transient, 401/403 → unauthorized, any other 4xx → permanent with the provider's reason.
pub fn status_error(status: u16, retry_after: Option<Duration>, body: &str) -> ConnectorError {
    let reason: String = body.chars().take(500).collect();
    let reason = if reason.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", reason.trim())
    };
    match status {
        429 => ConnectorError::RateLimited { retry_after },
        408 | 425 | 500..=599 => ConnectorError::Transient(reason),
        401 | 403 => ConnectorError::Unauthorized(reason),
        _ => ConnectorError::Permanent(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retry_classes() {
        assert_eq!(
            status_error(429, Some(Duration::from_secs(3)), ""),
            ConnectorError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(
            matches!(status_error(503, None, "busy"), ConnectorError::Transient(r) if r == "HTTP 503: busy")
        );
        assert!(matches!(
            status_error(401, None, ""),
            ConnectorError::Unauthorized(_)
        ));
        assert!(
            matches!(status_error(400, None, "outside the 24h window"), ConnectorError::Permanent(r) if r.contains("24h window"))
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h, 0), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:10 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, 1445412480), Some(Duration::from_secs(10)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, 0), None);
    }
}
