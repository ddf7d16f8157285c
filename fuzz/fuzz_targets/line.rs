#![no_main]
//! LINE: X-Line-Signature (base64 HMAC-SHA256), event splitting and the normaliser.

switchboard_fuzz::connector_target!(["line"], include_str!("../../config/examples/line.toml"),);
