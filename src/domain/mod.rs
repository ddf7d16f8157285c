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
        // International numbers are parsed from their digits alone: the phonenumber crate
        // mistakes a spaced Brazilian area code (`+55 11 9…`) for a carrier code.
        let compact: String;
        let s = if s.starts_with('+')
            && s.chars()
                .all(|c| c.is_ascii_digit() || " +-().\u{a0}".contains(c))
        {
            compact = std::iter::once('+')
                .chain(s.chars().filter(|c| c.is_ascii_digit()))
                .collect();
            compact.as_str()
        } else {
            s
        };
        let region = if s.starts_with('+') {
            None
        } else {
            Some(region)
        };
        let n = phonenumber::parse(region, s).ok()?;
        let e164 = n.format().mode(phonenumber::Mode::E164).to_string();
        // Quirks first: an old-form Brazilian mobile is not valid by today's plan, but it
        // is the same person as its 9-digit form.
        let canonical = canonical_quirks(&e164);
        let n = if canonical == e164 {
            n
        } else {
            phonenumber::parse(None, &canonical).ok()?
        };
        if !phonenumber::is_valid(&n) {
            return None;
        }
        Some(Phone(n.format().mode(phonenumber::Mode::E164).to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One form for numbers that WhatsApp and carriers write two ways:
/// - Brazil: mobiles gained a leading 9 in 2012–2016; WhatsApp still reports many accounts
///   in the old 8-digit form (`+55 AA 8XXXXXXX`). Canonical: with the 9 (`+55 AA 98XXXXXXX`).
///   Only subscriber numbers starting 6–9 are mobiles; landlines (2–5) are left alone.
/// - Mexico: mobiles were dialled `+52 1 …` until 2019 and WhatsApp still reports `521…`.
///   Canonical: without the 1 (`+52` and ten digits).
fn canonical_quirks(e164: &str) -> String {
    let Some(digits) = e164.strip_prefix('+') else {
        return e164.to_string();
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return e164.to_string();
    }
    if let Some(national) = digits.strip_prefix("55") {
        // AA (two-digit area, no leading 0) + 8-digit subscriber starting 6–9.
        let b = national.as_bytes();
        if b.len() == 10 && b[0] != b'0' && (b'6'..=b'9').contains(&b[2]) {
            return format!("+55{}9{}", &national[..2], &national[2..]);
        }
    }
    if let Some(rest) = digits.strip_prefix("521") {
        if rest.len() == 10 {
            return format!("+52{rest}");
        }
    }
    e164.to_string()
}

/// Email folding that only some providers honour, so each is opt-in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmailFolding {
    /// `ada+shop@x.io` ≡ `ada@x.io` (most providers deliver both to one mailbox).
    pub plus_addressing: bool,
    /// Gmail ignores dots in the local part and treats googlemail.com as gmail.com.
    pub gmail_dots: bool,
}

impl EmailFolding {
    pub fn fold(&self, email: &EmailAddress) -> EmailAddress {
        let Some((local, domain)) = email.0.rsplit_once('@') else {
            return email.clone();
        };
        let mut local = local.to_string();
        let mut domain = domain.to_string();
        if self.plus_addressing {
            if let Some((base, _tag)) = local.split_once('+') {
                if !base.is_empty() {
                    local = base.to_string();
                }
            }
        }
        if self.gmail_dots && (domain == "gmail.com" || domain == "googlemail.com") {
            let folded: String = local.chars().filter(|c| *c != '.').collect();
            if !folded.is_empty() {
                local = folded;
            }
            domain = "gmail.com".into();
        }
        EmailAddress(format!("{local}@{domain}"))
    }
}

pub fn parse_region(code: &str) -> Option<country::Id> {
    country::Id::from_str(&code.trim().to_ascii_uppercase()).ok()
}

/// The normaliser for identity claims: the hub's single place for email and phone forms.
#[derive(Debug, Clone)]
pub struct ClaimNormalizer {
    pub region: country::Id,
    pub folding: EmailFolding,
    /// The guards identity resolution applies (blocklist, caps, sharing, priority).
    pub guards: crate::pipeline::identity::Guards,
}

impl ClaimNormalizer {
    /// The claim in its matching form, or `None` when it is not a valid value (such claims
    /// are not identities; they still reach the timeline through the event itself).
    /// Blocklisted values are kept: resolution records them but links nothing through them.
    pub fn normalize(&self, c: &IdentityClaim) -> Option<IdentityClaim> {
        let value = match c.kind {
            ClaimKind::Email => self.folding.fold(&EmailAddress::parse(&c.value)?).0,
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
        Some(IdentityClaim {
            kind: c.kind,
            value,
            scope: c.scope.clone(),
        })
    }
}

/// Junk values that never identify a person (`noreply@…`, `+1 000 000 0000`) or that an
/// operator listed (lower-case emails or E.164 phones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocklist(pub Vec<String>);

impl Blocklist {
    pub fn is_blocked(&self, value: &str) -> bool {
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
        self.0.iter().any(|b| b.eq_ignore_ascii_case(&v))
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
    fn blocklisted_values_are_recognised_but_kept_by_the_normaliser() {
        let b = Blocklist(vec!["test@example.com".into()]);
        assert!(b.is_blocked("noreply@shop.com"));
        assert!(b.is_blocked("TEST@example.com"));
        assert!(b.is_blocked("+10000000000"));
        assert!(!b.is_blocked("ada@example.com"));
        let n = normalizer(EmailFolding::default());
        // Kept so resolution can record it on the customer without linking through it.
        assert_eq!(
            n.normalize(&IdentityClaim::email("noreply@shop.com"))
                .unwrap()
                .value,
            "noreply@shop.com"
        );
        assert!(n.normalize(&IdentityClaim::external_id("", "x")).is_none());
        assert_eq!(
            n.normalize(&IdentityClaim::name("  Ada   Lovelace "))
                .unwrap()
                .value,
            "Ada Lovelace"
        );
    }

    fn normalizer(folding: EmailFolding) -> ClaimNormalizer {
        ClaimNormalizer {
            region: parse_region("US").unwrap(),
            folding,
            guards: Default::default(),
        }
    }

    #[test]
    fn brazilian_mobiles_with_and_without_the_ninth_digit_are_one_number() {
        let br = parse_region("BR").unwrap();
        let us = parse_region("US").unwrap();
        let with9 = Phone::parse("+55 11 98765-4321", us).unwrap();
        assert_eq!(with9.as_str(), "+5511987654321");
        // WhatsApp's old 8-digit form, with and without the plus, and written nationally.
        assert_eq!(Phone::parse("+551187654321", us).unwrap(), with9);
        assert_eq!(Phone::parse("whatsapp:+551187654321", us).unwrap(), with9);
        assert_eq!(Phone::parse("(11) 8765-4321", br).unwrap(), with9);
        // A landline (subscriber starts 2–5) gets no 9.
        assert_eq!(
            Phone::parse("+55 11 3456-7890", us).unwrap().as_str(),
            "+551134567890"
        );
    }

    #[test]
    fn mexican_mobiles_with_the_old_521_prefix_are_the_same_as_52() {
        let us = parse_region("US").unwrap();
        let new = Phone::parse("+52 55 1234 5678", us).unwrap();
        assert_eq!(new.as_str(), "+525512345678");
        assert_eq!(Phone::parse("+5215512345678", us).unwrap(), new);
        assert_eq!(Phone::parse("whatsapp:+521 55 1234 5678", us).unwrap(), new);
    }

    #[test]
    fn email_folding_is_off_by_default_and_each_fold_is_opt_in() {
        let plain = normalizer(EmailFolding::default());
        let e = |n: &ClaimNormalizer, v: &str| n.normalize(&IdentityClaim::email(v)).unwrap().value;
        assert_eq!(e(&plain, " A.Da+Shop@GMail.com "), "a.da+shop@gmail.com");
        let plus = normalizer(EmailFolding {
            plus_addressing: true,
            gmail_dots: false,
        });
        assert_eq!(e(&plus, "a.da+shop@gmail.com"), "a.da@gmail.com");
        assert_eq!(e(&plus, "ada+x@example.com"), "ada@example.com");
        assert_eq!(e(&plus, "+x@example.com"), "+x@example.com");
        let dots = normalizer(EmailFolding {
            plus_addressing: false,
            gmail_dots: true,
        });
        assert_eq!(e(&dots, "a.da@googlemail.com"), "ada@gmail.com");
        assert_eq!(e(&dots, "a.da@example.com"), "a.da@example.com");
    }
}
