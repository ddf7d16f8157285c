//! Twilio's request signature (`X-Twilio-Signature`), as twilio-python's `RequestValidator`
//! computes and checks it:
//!
//! `base64(HMAC-SHA1(auth_token, url + Σ name + value))` over the POST parameters sorted by
//! name, each name once with its distinct values sorted. The URL is the one configured at
//! Twilio (query string included), tried with and without the port because Twilio's own
//! signing is inconsistent about it. A JSON body is signed through its hash instead:
//! Twilio appends `bodySHA256=<hex sha256(body)>` to the URL and signs with no parameters.
//!
//! Nothing here panics on input; every comparison is constant-time and every candidate is
//! compared, whichever matches.

use std::collections::{BTreeMap, BTreeSet};

use sha2::Digest;
use switchboard_core::signature::{ct_eq, decode, encode, hmac, Algorithm, Encoding};
use switchboard_core::VerifyError;

/// The string Twilio signs: `url` followed by every parameter name (sorted, once) and each of
/// its distinct values (sorted).
pub fn signing_string(url: &str, params: &[(String, String)]) -> String {
    let mut by_name: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (k, v) in params {
        by_name.entry(k.as_str()).or_default().insert(v.as_str());
    }
    let mut s = String::with_capacity(url.len() + params.len() * 24);
    s.push_str(url);
    for (name, values) in by_name {
        for v in values {
            s.push_str(name);
            s.push_str(v);
        }
    }
    s
}

/// The `X-Twilio-Signature` Twilio sends for a request to `url` with `params`.
pub fn compute_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mac = hmac(
        Algorithm::Sha1,
        auth_token.as_bytes(),
        &[signing_string(url, params).as_bytes()],
    );
    encode(Encoding::Base64, &mac)
}

/// Hex SHA-256 of a JSON body, the value Twilio puts in `bodySHA256`.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(body))
}

/// Splits `scheme://authority rest` where `rest` starts at the first `/`, `?` or `#`.
fn split_authority(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    Some((scheme, &after[..end], &after[end..]))
}

/// `(userinfo@, host, Some(port))` of an authority; IPv6 literals keep their brackets.
fn split_port(authority: &str) -> (&str, &str, Option<&str>) {
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    let port_at = if hostport.starts_with('[') {
        hostport.find(']').map(|i| i + 1)
    } else {
        hostport.rfind(':')
    };
    match port_at {
        Some(i) if hostport[i..].starts_with(':') => {
            let port = &hostport[i + 1..];
            if port.is_empty() {
                (userinfo, &hostport[..i], None)
            } else {
                (userinfo, &hostport[..i], Some(port))
            }
        }
        _ => (userinfo, hostport, None),
    }
}

/// The two forms twilio-python tries: the URL with its port (the scheme's default added when
/// it has none) and without any port (an explicit one stripped).
pub fn port_variants(url: &str) -> [String; 2] {
    let Some((scheme, authority, rest)) = split_authority(url) else {
        return [url.to_string(), url.to_string()];
    };
    let (userinfo, host, port) = split_port(authority);
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else {
        "80"
    };
    let with = format!(
        "{scheme}://{userinfo}{host}:{}{rest}",
        port.unwrap_or(default_port)
    );
    let without = format!("{scheme}://{userinfo}{host}{rest}");
    [with, without]
}

/// `url` with `name=value` appended to its query string (before any fragment).
fn append_query(url: &str, name: &str, value: &str) -> String {
    let (base, fragment) = match url.find('#') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    format!("{base}{sep}{name}={value}{fragment}")
}

/// What was signed besides the URL.
#[derive(Debug, Clone, Copy)]
pub enum Signed<'a> {
    /// Form parameters, decoded, in any order.
    Form(&'a [(String, String)]),
    /// A JSON body, with the `bodySHA256` value the request's query carried.
    Json {
        body: &'a [u8],
        body_sha256: &'a str,
    },
}

/// The URLs a genuine signature may have been computed over, given the configured URL:
/// with and without the port, and — when the configured URL carries connection overrides
/// (`#ct=…&rc=…`, which never reach us) — with and without that fragment.
pub fn candidate_urls(configured: &str, signed: Signed<'_>) -> Vec<String> {
    let mut bases = vec![configured.to_string()];
    if let Some(i) = configured.find('#') {
        bases.push(configured[..i].to_string());
    }
    let mut out: Vec<String> = Vec::with_capacity(4);
    for b in bases {
        let b = match signed {
            Signed::Form(_) => b,
            Signed::Json { body_sha256, .. } => append_query(&b, "bodySHA256", body_sha256),
        };
        for v in port_variants(&b) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// Checks a provided `X-Twilio-Signature` for a request Twilio sent to `configured_url`.
pub fn validate(
    auth_token: &str,
    configured_url: &str,
    signed: Signed<'_>,
    provided: Option<&str>,
) -> Result<(), VerifyError> {
    let provided = provided
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or(VerifyError::Missing("X-Twilio-Signature"))?;
    let provided = decode(Encoding::Base64, provided)?;
    let (params, body_ok): (&[(String, String)], bool) = match signed {
        Signed::Form(p) => (p, true),
        Signed::Json {
            body,
            body_sha256: claimed,
        } => (
            &[],
            ct_eq(
                body_sha256(body).as_bytes(),
                claimed.trim().to_ascii_lowercase().as_bytes(),
            ),
        ),
    };
    let mut ok = false;
    for url in candidate_urls(configured_url, signed) {
        let mac = hmac(
            Algorithm::Sha1,
            auth_token.as_bytes(),
            &[signing_string(&url, params).as_bytes()],
        );
        ok |= ct_eq(&mac, &provided);
    }
    if ok && body_ok {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_variants_add_the_default_port_or_strip_an_explicit_one() {
        assert_eq!(
            port_variants("https://a.example/x?y=1"),
            [
                "https://a.example:443/x?y=1".to_string(),
                "https://a.example/x?y=1".to_string()
            ]
        );
        assert_eq!(
            port_variants("http://u:p@a.example:8080?q"),
            [
                "http://u:p@a.example:8080?q".to_string(),
                "http://u:p@a.example?q".to_string()
            ]
        );
        assert_eq!(
            port_variants("https://[::1]:8443/h"),
            [
                "https://[::1]:8443/h".to_string(),
                "https://[::1]/h".to_string()
            ]
        );
        assert_eq!(port_variants("not a url")[0], "not a url");
    }

    #[test]
    fn body_hash_goes_into_the_query_before_any_fragment() {
        assert_eq!(append_query("https://a/x", "b", "1"), "https://a/x?b=1");
        assert_eq!(
            append_query("https://a/x?c=2", "b", "1"),
            "https://a/x?c=2&b=1"
        );
        assert_eq!(
            append_query("https://a/x#rc=2", "b", "1"),
            "https://a/x?b=1#rc=2"
        );
    }

    #[test]
    fn junk_signatures_are_errors_not_panics() {
        let p: Vec<(String, String)> = vec![("A".into(), "\u{0}".into())];
        for junk in [None, Some(""), Some("!!!"), Some("Zm9v"), Some("\u{e9}")] {
            assert!(validate("t", "https://a", Signed::Form(&p), junk).is_err());
        }
        assert!(validate("t", "::", Signed::Form(&p), Some("Zm9v")).is_err());
    }
}
