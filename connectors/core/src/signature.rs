//! Shared signature helpers: HMAC-SHA256/SHA1 over raw bytes, hex or base64, optional prefix
//! (`sha256=`, `v0=`), timestamp tolerance, several accepted signatures, constant-time compare.
//!
//! Nothing here panics on input: every malformed value is a `VerifyError`.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::VerifyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha256,
    Sha1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Hex,
    Base64,
}

/// HMAC of the concatenation of `parts` (so `v0:{ts}:{body}` needs no copy of the body).
pub fn hmac(alg: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
    }
}

pub fn encode(enc: Encoding, bytes: &[u8]) -> String {
    match enc {
        Encoding::Hex => hex::encode(bytes),
        Encoding::Base64 => STANDARD.encode(bytes),
    }
}

/// Decodes a provided signature. Hex is case-insensitive; base64 accepts the standard and the
/// URL-safe alphabet.
pub fn decode(enc: Encoding, s: &str) -> Result<Vec<u8>, VerifyError> {
    let s = s.trim();
    match enc {
        Encoding::Hex => hex::decode(s).map_err(|_| VerifyError::Malformed("signature")),
        Encoding::Base64 => STANDARD
            .decode(s)
            .or_else(|_| URL_SAFE.decode(s))
            .map_err(|_| VerifyError::Malformed("signature")),
    }
}

/// Constant-time equality. Lengths are not secret (a MAC has a fixed length).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Strips an expected prefix such as `sha256=` or `v0=`.
fn strip<'a>(provided: &'a str, prefix: Option<&str>) -> Result<&'a str, VerifyError> {
    let provided = provided.trim();
    match prefix {
        None | Some("") => Ok(provided),
        Some(p) => provided
            .strip_prefix(p)
            .ok_or(VerifyError::Malformed("signature prefix")),
    }
}

/// One HMAC scheme: algorithm, encoding of the signature, and its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacScheme {
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub prefix: Option<String>,
}

impl HmacScheme {
    pub fn new(algorithm: Algorithm, encoding: Encoding, prefix: Option<&str>) -> Self {
        Self {
            algorithm,
            encoding,
            prefix: prefix.map(str::to_string),
        }
    }

    /// The signature a provider would send for `parts` under `key`, prefix included.
    pub fn sign(&self, key: &[u8], parts: &[&[u8]]) -> String {
        let mac = hmac(self.algorithm, key, parts);
        format!(
            "{}{}",
            self.prefix.as_deref().unwrap_or(""),
            encode(self.encoding, &mac)
        )
    }

    /// Verifies one provided signature.
    pub fn verify(&self, key: &[u8], parts: &[&[u8]], provided: &str) -> Result<(), VerifyError> {
        self.verify_any(&[key], parts, [provided])
    }

    /// Accepts when any provided signature matches under any key: several `v1=` entries in one
    /// header, or an old and a new secret during rotation. Every candidate is compared; the
    /// result does not depend on which one matched.
    pub fn verify_any<'s>(
        &self,
        keys: &[&[u8]],
        parts: &[&[u8]],
        provided: impl IntoIterator<Item = &'s str>,
    ) -> Result<(), VerifyError> {
        let expected: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| hmac(self.algorithm, k, parts))
            .collect();
        let mut seen = false;
        let mut ok = false;
        let mut last_err = VerifyError::Missing("signature");
        for candidate in provided {
            seen = true;
            let decoded = match strip(candidate, self.prefix.as_deref())
                .and_then(|s| decode(self.encoding, s))
            {
                Ok(d) => d,
                Err(e) => {
                    last_err = e;
                    continue;
                }
            };
            for e in &expected {
                ok |= ct_eq(e, &decoded);
            }
            last_err = VerifyError::Mismatch;
        }
        if ok {
            Ok(())
        } else if !seen {
            Err(VerifyError::Missing("signature"))
        } else {
            Err(last_err)
        }
    }
}

/// Refuses a timestamp (unix seconds) more than `tolerance_secs` away from `now`, in either
/// direction.
pub fn check_timestamp(timestamp: i64, now: i64, tolerance_secs: i64) -> Result<(), VerifyError> {
    let delta = now.checked_sub(timestamp).ok_or(VerifyError::Expired)?;
    if delta.checked_abs().is_some_and(|d| d <= tolerance_secs) {
        Ok(())
    } else {
        Err(VerifyError::Expired)
    }
}

/// Parses a unix-seconds timestamp header value.
pub fn parse_timestamp(s: &str) -> Result<i64, VerifyError> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| VerifyError::Malformed("timestamp"))
}

#[cfg(test)]
mod tests {
    //! Published vectors from providers.md (TEST VECTORS §A).
    use super::*;

    #[test]
    fn github_sha256_vector_verifies_with_prefix() {
        let s = HmacScheme::new(Algorithm::Sha256, Encoding::Hex, Some("sha256="));
        let key = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(s.sign(key, &[body]), header);
        assert_eq!(s.verify(key, &[body], header), Ok(()));
        assert_eq!(
            s.verify(key, &[b"Hello, World?"], header),
            Err(VerifyError::Mismatch)
        );
        // Without the prefix the header is malformed for this scheme.
        assert_eq!(
            s.verify(
                key,
                &[body],
                "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
            ),
            Err(VerifyError::Malformed("signature prefix"))
        );
    }

    #[test]
    fn github_legacy_sha1_vector_verifies() {
        let s = HmacScheme::new(Algorithm::Sha1, Encoding::Hex, Some("sha1="));
        let header = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";
        assert_eq!(
            s.verify(b"It's a Secret to Everybody", &[b"Hello, World!"], header),
            Ok(())
        );
    }

    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

    #[test]
    fn slack_v0_vector_verifies_within_tolerance_and_fails_outside() {
        let s = HmacScheme::new(Algorithm::Sha256, Encoding::Hex, Some("v0="));
        let key = b"8f742231b10e8888abcd99yyyzzz85a5";
        let ts = "1531420618";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        let parts: [&[u8]; 4] = [b"v0:", ts.as_bytes(), b":", SLACK_BODY.as_bytes()];
        assert_eq!(s.verify(key, &parts, sig), Ok(()));
        let tampered = format!("{SLACK_BODY}------");
        let bad: [&[u8]; 4] = [b"v0:", ts.as_bytes(), b":", tampered.as_bytes()];
        assert_eq!(s.verify(key, &bad, sig), Err(VerifyError::Mismatch));
        let t = parse_timestamp(ts).unwrap();
        assert_eq!(check_timestamp(t, 1531420618, 300), Ok(()));
        assert_eq!(
            check_timestamp(t, 1531420618 + 301, 300),
            Err(VerifyError::Expired)
        );
        assert_eq!(
            check_timestamp(t, 1531420618 - 301, 300),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn line_base64_vector_verifies() {
        let s = HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None);
        let sig = "/gg9a+LvFevTH1sd7XCQycD7tsWclCsInj7MhBHxN7k=";
        assert_eq!(
            s.verify(b"channel_secret", &[b"bodybodybodybody"], sig),
            Ok(())
        );
        assert!(s
            .verify(
                b"channel_secret",
                &[b"bodybodybodybody"],
                "invalid_signature"
            )
            .is_err());
    }

    #[test]
    fn woocommerce_vector_with_empty_secret_verifies() {
        let s = HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None);
        let sig = "GBDo00G55h6IiV+6CxqivQPLbI//KzaOZm747971tPs=";
        assert_eq!(s.sign(b"", &[b"secret"]), sig);
        assert_eq!(s.verify(b"", &[b"secret"], sig), Ok(()));
    }

    #[test]
    fn twilio_sha1_base64_vectors_verify() {
        let s = HmacScheme::new(Algorithm::Sha1, Encoding::Base64, None);
        let form = "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212";
        assert_eq!(
            s.verify(b"12345", &[form.as_bytes()], "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            Ok(())
        );
        let dup = "https://mycompany.com/myapp.php?foo=1&bar=2Digits1234Digits5678SidCA123SidAccountAC123";
        assert_eq!(
            s.verify(b"12345", &[dup.as_bytes()], "IK+Dwps556ElfBT0I3Rgjkr1wJU="),
            Ok(())
        );
        // JSON body form: bodySHA256 is hex SHA-256 of the body, carried in the URL.
        use sha2::Digest;
        let body = br#"{"property": "value", "boolean": true}"#;
        let body_hash = hex::encode(sha2::Sha256::digest(body));
        assert_eq!(
            body_hash,
            "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        let url = format!("https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={body_hash}");
        assert_eq!(
            s.verify(b"12345", &[url.as_bytes()], "a9nBmqA0ju/hNViExpshrM61xv4="),
            Ok(())
        );
    }

    #[test]
    fn several_signatures_accept_when_any_matches_under_any_key() {
        let s = HmacScheme::new(Algorithm::Sha256, Encoding::Hex, None);
        let good = s.sign(b"new", &[b"payload"]);
        let other = s.sign(b"unrelated", &[b"payload"]);
        assert_eq!(
            s.verify_any(
                &[b"old", b"new"],
                &[b"payload"],
                [other.as_str(), good.as_str()]
            ),
            Ok(())
        );
        assert_eq!(
            s.verify_any(&[b"old"], &[b"payload"], [good.as_str()]),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            s.verify_any(&[b"new"], &[b"payload"], []),
            Err(VerifyError::Missing("signature"))
        );
    }

    #[test]
    fn malformed_signatures_are_errors_not_panics() {
        let s = HmacScheme::new(Algorithm::Sha256, Encoding::Hex, Some("sha256="));
        for junk in [
            "",
            "sha256=",
            "sha256=zz",
            "sha256=abc",
            "sha256=\u{00e9}\u{00e9}",
            "sha1=00",
        ] {
            assert!(s.verify(b"k", &[b"body"], junk).is_err(), "{junk:?}");
        }
        let b = HmacScheme::new(Algorithm::Sha256, Encoding::Base64, None);
        assert!(b.verify(b"k", &[b"body"], "!!!not base64").is_err());
        assert_eq!(
            check_timestamp(i64::MIN, i64::MAX, 300),
            Err(VerifyError::Expired)
        );
        assert!(parse_timestamp("12a").is_err());
    }

    #[test]
    fn standard_webhooks_vector_verifies() {
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let s = HmacScheme::new(Algorithm::Sha256, Encoding::Base64, Some("v1,"));
        let parts: [&[u8]; 5] = [
            b"msg_p5jXN8AQM9LWM0D4loKWxJek",
            b".",
            b"1614265330",
            b".",
            br#"{"test": 2432232314}"#,
        ];
        assert_eq!(
            s.verify(
                &key,
                &parts,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
            ),
            Ok(())
        );
        assert_eq!(
            s.verify(
                &key,
                &parts,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
            ),
            Err(VerifyError::Mismatch)
        );
    }
}
