//! Domain values built only by `parse`: a value that exists is valid.

use std::str::FromStr;

use phonenumber::country;
use switchboard_core::{ClaimKind, IdentityClaim};

/// An email address, trimmed and lower-cased (no provider-specific folding).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_start_matches("mailto:").to_lowercase();
        let (local, domain) = s.rsplit_once('@')?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && domain.len() >= 3
            && domain.len() <= 253
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
        ok.then_some(EmailAddress(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164 form (`+4420…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// Parses with `region` as the default for numbers without a country code; refuses
    /// numbers that are not valid for their region.
    pub fn parse(s: &str, region: country::Id) -> Option<Self> {
        let s = s
            .trim()
            .trim_start_matches("tel:")
            .trim_start_matches("whatsapp:");
        if s.is_empty() || s.len() > 40 {
            return None;
        }
        let n = phonenumber::parse(Some(region), s).ok()?;
        if !phonenumber::is_valid(&n) {
            return None;
        }
        Some(Phone(n.format().mode(phonenumber::Mode::E164).to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn parse_region(code: &str) -> Option<country::Id> {
    country::Id::from_str(&code.trim().to_ascii_uppercase()).ok()
}

/// The normaliser for identity claims: the hub's single place for email and phone forms.
#[derive(Debug, Clone)]
pub struct ClaimNormalizer {
    pub region: country::Id,
    pub blocklist: Vec<String>,
}

impl ClaimNormalizer {
    /// The claim in its matching form, or `None` when it is junk or blocklisted; such claims
    /// are not identities (they still reach the timeline through the event itself).
    pub fn normalize(&self, c: &IdentityClaim) -> Option<IdentityClaim> {
        let value = match c.kind {
            ClaimKind::Email => EmailAddress::parse(&c.value)?.0,
            ClaimKind::Phone => Phone::parse(&c.value, self.region)?.0,
            ClaimKind::PlatformId | ClaimKind::ExternalId => {
                let v = c.value.trim();
                if v.is_empty() || v.len() > 256 || c.scope.is_empty() {
                    return None;
                }
                v.to_string()
            }
            ClaimKind::Name => {
                let v = c.value.split_whitespace().collect::<Vec<_>>().join(" ");
                if v.is_empty() {
                    return None;
                }
                v.chars().take(200).collect()
            }
        };
        if c.kind.is_strong() && self.is_blocked(&value) {
            return None;
        }
        Some(IdentityClaim {
            kind: c.kind,
            value,
            scope: c.scope.clone(),
        })
    }

    fn is_blocked(&self, value: &str) -> bool {
        let v = value.to_lowercase();
        const JUNK_LOCALS: &[&str] = &[
            "noreply",
            "no-reply",
            "donotreply",
            "do-not-reply",
            "mailer-daemon",
        ];
        if let Some((local, _)) = v.split_once('@') {
            if JUNK_LOCALS.contains(&local) {
                return true;
            }
        }
        let digits: String = v.chars().filter(|c| c.is_ascii_digit()).collect();
        if v.starts_with('+') && digits.len() > 4 && digits[1..].chars().all(|c| c == '0') {
            return true;
        }
        self.blocklist.iter().any(|b| b.eq_ignore_ascii_case(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased_and_junk_refused() {
        assert_eq!(
            EmailAddress::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@com",
            "a b@example.com",
            "ada@.com",
        ] {
            assert!(EmailAddress::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn phones_become_e164_with_the_default_region() {
        let us = parse_region("us").unwrap();
        let gb = parse_region("GB").unwrap();
        assert_eq!(
            Phone::parse("(415) 555-2671", us).unwrap().as_str(),
            "+14155552671"
        );
        assert_eq!(
            Phone::parse("020 7946 0958", gb).unwrap().as_str(),
            "+442079460958"
        );
        assert_eq!(
            Phone::parse("+44 20 7946 0958", us).unwrap().as_str(),
            "+442079460958"
        );
        assert_eq!(
            Phone::parse("whatsapp:+14155552671", gb).unwrap().as_str(),
            "+14155552671"
        );
        assert!(Phone::parse("12", us).is_none());
        assert!(Phone::parse("not a phone", us).is_none());
    }

    #[test]
    fn blocklisted_and_junk_values_are_not_identities() {
        let n = ClaimNormalizer {
            region: parse_region("US").unwrap(),
            blocklist: vec!["test@example.com".into()],
        };
        assert!(n
            .normalize(&IdentityClaim::email("noreply@shop.com"))
            .is_none());
        assert!(n
            .normalize(&IdentityClaim::email("TEST@example.com"))
            .is_none());
        assert!(n.normalize(&IdentityClaim::phone("+10000000000")).is_none());
        assert!(n.normalize(&IdentityClaim::external_id("", "x")).is_none());
        assert_eq!(
            n.normalize(&IdentityClaim::name("  Ada   Lovelace "))
                .unwrap()
                .value,
            "Ada Lovelace"
        );
    }
}
