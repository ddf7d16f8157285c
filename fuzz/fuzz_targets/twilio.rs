#![no_main]
//! Twilio: X-Twilio-Signature over the URL and form (or bodySHA256), form parsing and the normaliser.

switchboard_fuzz::connector_target!(
    ["twilio"],
    include_str!("../../config/examples/twilio.toml"),
);
