#![no_main]
//! Mailgun inbound routes: the signature fields (timestamp, token, signature), form parsing and the normaliser.

switchboard_fuzz::connector_target!(
    ["mailgun"],
    include_str!("../../config/examples/mailgun.toml"),
);
