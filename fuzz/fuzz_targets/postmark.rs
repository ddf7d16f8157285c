#![no_main]
//! Postmark inbound: basic auth, the JSON payload and the normaliser.

switchboard_fuzz::connector_target!(
    ["postmark"],
    include_str!("../../config/examples/postmark.toml"),
);
