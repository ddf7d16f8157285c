//! Plumbing both ERP connectors share: their timestamp format, amounts, config checks, and the
//! round cursor that walks several record streams (Odoo models, ERPNext doctypes) one page at
//! a time.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_core::traits::Cursor;
use switchboard_core::{money, ConfigError, ConfigResult, ConnectorError, PollPage, RawEvent};

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (Odoo `write_date`, Frappe `modified`), read as UTC → unix
/// ms. `None` for anything else.
pub fn datetime_ms(s: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// Unix ms → `YYYY-MM-DD HH:MM:SS` UTC (second resolution, rounded down), for domains and
/// filters.
pub fn format_datetime(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A non-empty string field. Odoo says `false` for an empty field, Frappe `null` or `""`.
pub fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// An amount in minor units of `currency`. Exact from its decimal text when it has one; a JSON
/// float with binary noise beyond the currency's digits (`0.30000000000000004`, which a
/// server computing in floats can send) is rounded to the currency's digits, as the server
/// itself displays it.
pub fn amount_minor(v: &Value, currency: &str) -> Option<i64> {
    if let Some(m) = money::minor_json(v, currency) {
        return Some(m);
    }
    let f = v.as_f64()?;
    let scaled = f * 10f64.powi(money::exponent(currency) as i32);
    (scaled.is_finite() && scaled.abs() < 9.0e15).then(|| scaled.round() as i64)
}

/// A quantity as a whole number; `2.0` → 2. A fractional quantity (3.5 kg) is rounded.
pub fn quantity(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f.abs() < 9.0e15).then(|| f.round() as i64)
}

/// A phone as the system holds it, with the separators people type removed, so that the hub's
/// E.164 parser sees `+32470123456` rather than `+32 (470) 12-34-56`.
pub fn phone(s: &str) -> Option<String> {
    let cleaned: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '/'))
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// `api_base` as an http(s) URL without a trailing `/`.
pub fn api_base(path: &str, given: Option<String>, example: &str) -> ConfigResult<String> {
    let Some(given) = given else {
        return Err(ConfigError::new(
            format!("{path}.api_base"),
            format!("missing (the server's root URL, e.g. {example})"),
        ));
    };
    let base = given.trim().trim_end_matches('/').to_string();
    let ok = (base.starts_with("http://") || base.starts_with("https://"))
        && base.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
    if ok {
        Ok(base)
    } else {
        Err(ConfigError::new(
            format!("{path}.api_base"),
            format!("`{given}` is not an http(s) URL"),
        ))
    }
}

/// `list` is non-empty, has no repeats, and holds only names from `known`.
pub fn check_streams(path: &str, key: &str, list: &[String], known: &[&str]) -> ConfigResult<()> {
    if list.is_empty() {
        return Err(ConfigError::new(
            format!("{path}.{key}"),
            "must name at least one",
        ));
    }
    for (i, name) in list.iter().enumerate() {
        if !known.contains(&name.as_str()) {
            return Err(ConfigError::new(
                format!("{path}.{key}[{i}]"),
                format!("`{name}` is not one of {}", known.join(", ")),
            ));
        }
        if list[..i].contains(name) {
            return Err(ConfigError::new(
                format!("{path}.{key}[{i}]"),
                format!("`{name}` is listed twice"),
            ));
        }
    }
    Ok(())
}

/// `poll_interval_secs`: 1 s to a day.
pub fn check_interval(path: &str, secs: u64) -> ConfigResult<std::time::Duration> {
    if (1..=86_400).contains(&secs) {
        Ok(std::time::Duration::from_secs(secs))
    } else {
        Err(ConfigError::new(
            format!("{path}.poll_interval_secs"),
            "must be between 1 and 86400",
        ))
    }
}

/// Percent-encodes one URL path segment (`Sales Order` → `Sales%20Order`).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The poll cursor: the position reached in every stream, and the stream to ask next. A round
/// walks the streams in config order; it ends (and `more` turns false) after the last stream
/// is caught up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "P: DeserializeOwned"))]
pub struct RoundCursor<P> {
    #[serde(default)]
    pub next: usize,
    #[serde(default = "BTreeMap::new")]
    pub at: BTreeMap<String, P>,
}

impl<P: Serialize + DeserializeOwned> RoundCursor<P> {
    /// A cursor this connector did not write starts over from the beginning (the store's
    /// dedupe drops what it already has) rather than stopping the poller for good.
    pub fn read(cursor: Option<&str>, streams: usize) -> Self {
        let mut c = cursor
            .and_then(|c| serde_json::from_str::<RoundCursor<P>>(c).ok())
            .unwrap_or(RoundCursor {
                next: 0,
                at: BTreeMap::new(),
            });
        if c.next >= streams {
            c.next = 0;
        }
        c
    }

    pub fn encode(&self) -> Cursor {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One page of one stream.
pub struct StreamPage<P> {
    pub events: Vec<RawEvent>,
    /// The position of the page's last row, when it had one.
    pub last: Option<P>,
    /// The page was as long as the page size: the stream may have more right now.
    pub full: bool,
}

/// A source of several streams read page by page after a position.
#[async_trait]
pub trait Streams: Send + Sync {
    type Pos: Serialize + DeserializeOwned + Clone + Send + Sync;
    fn streams(&self) -> &[String];
    async fn page(
        &self,
        stream: &str,
        after: Option<&Self::Pos>,
    ) -> Result<StreamPage<Self::Pos>, ConnectorError>;
}

/// One poll: the first stream (from the cursor's `next`) with new rows gives the page; streams
/// with nothing new are passed over in the same call, since the hub waits a full interval
/// after an empty page. The cursor moves past exactly the rows returned, so a restart neither
/// skips nor repeats one.
pub async fn poll_round<S: Streams + ?Sized>(
    s: &S,
    cursor: Option<&str>,
) -> Result<PollPage, ConnectorError> {
    let streams = s.streams();
    let mut c = RoundCursor::<S::Pos>::read(cursor, streams.len());
    for (i, name) in streams.iter().enumerate().skip(c.next) {
        let page = s.page(name, c.at.get(name)).await?;
        if let Some(last) = page.last {
            c.at.insert(name.clone(), last);
        }
        if !page.events.is_empty() {
            c.next = if page.full { i } else { i + 1 };
            let more = c.next < streams.len();
            if !more {
                c.next = 0;
            }
            return Ok(PollPage {
                events: page.events,
                next_cursor: Some(c.encode()),
                more,
            });
        }
    }
    c.next = 0;
    Ok(PollPage {
        events: Vec::new(),
        next_cursor: Some(c.encode()),
        more: false,
    })
}

/// A cursor whose every stream starts at `pos` (a backfill from a date).
pub fn cursor_from<P: Serialize + DeserializeOwned + Clone>(streams: &[String], pos: P) -> Cursor {
    RoundCursor {
        next: 0,
        at: streams.iter().map(|s| (s.clone(), pos.clone())).collect(),
    }
    .encode()
}

/// Reads a provider's JSON body, without echoing it into an error (it may be large).
pub fn json_body<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ConnectorError> {
    serde_json::from_slice(bytes).map_err(|_| {
        ConnectorError::Transient(format!("{what}: the answer is not the JSON expected"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_with_and_without_fraction_read_as_utc() {
        assert_eq!(datetime_ms("2026-01-02 03:04:05"), Some(1_767_323_045_000));
        assert_eq!(
            datetime_ms("2026-01-02 03:04:05.250000"),
            Some(1_767_323_045_250)
        );
        assert_eq!(datetime_ms("2026-01-02"), None);
        assert_eq!(datetime_ms("false"), None);
        assert_eq!(format_datetime(1_767_323_045_999), "2026-01-02 03:04:05");
    }

    #[test]
    fn float_noise_rounds_to_the_currency_but_decimal_text_stays_exact() {
        assert_eq!(
            amount_minor(&serde_json::json!(1234.56), "EUR"),
            Some(123456)
        );
        assert_eq!(
            amount_minor(&serde_json::json!(0.30000000000000004), "EUR"),
            Some(30)
        );
        assert_eq!(amount_minor(&serde_json::json!("10.5"), "JPY"), None);
        assert_eq!(amount_minor(&serde_json::json!(false), "EUR"), None);
    }

    #[test]
    fn stream_lists_name_the_bad_entry() {
        let known = ["a", "b"];
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_streams("c[0]", "models", &l(&["a", "b"]), &known).is_ok());
        let e = check_streams("c[0]", "models", &l(&["a", "x"]), &known).unwrap_err();
        assert_eq!(e.key, "c[0].models[1]");
        let e = check_streams("c[0]", "models", &l(&["a", "a"]), &known).unwrap_err();
        assert_eq!(e.key, "c[0].models[1]");
        assert!(check_streams("c[0]", "models", &[], &known).is_err());
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("Sales Order"), "Sales%20Order");
        assert_eq!(path_segment("A/B&C"), "A%2FB%26C");
    }
}
