#![no_main]
//! The generic connector: its configurable HMAC verifier (hex/sha256 and base64/sha1), JSON Pointer event ids, and the mapping normaliser.

switchboard_fuzz::connector_target!(
    ["generic"],
    include_str!("../../config/examples/generic.toml"),
    EXTRA,
);

/// A second scheme (base64 HMAC-SHA1, event id from a header) and every mapping pointer,
/// so the fuzzer reaches the branches the example leaves off.
const EXTRA: &str = r#"
[[connectors]]
id = "api-b64"
kind = "generic"
secret = "fuzz-secret"
signature_header = "x-signature"
signature_encoding = "base64"
signature_algorithm = "sha1"
event_id_header = "x-event-id"
event_kind = "/kind"
channel = "crm"

[connectors.mapping]
text = "/m/text"
thread = "/m/thread"
occurred_at = "/m/at"
customer_email = "/c/email"
customer_phone = "/c/phone"
customer_name = "/c/name"
customer_external_id = "/c/id"
message_id = "/m/id"
direction = "/m/direction"
status = "/m/status"
order_id = "/o/id"
order_total = "/o/total"
order_currency = "/o/currency"
order_status = "/o/status"
order_updated_at = "/o/updated_at"
"#;
