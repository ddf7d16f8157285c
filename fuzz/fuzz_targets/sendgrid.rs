#![no_main]
//! SendGrid Inbound Parse: basic auth and the ECDSA signature, multipart/form-data parsing and the normaliser.

switchboard_fuzz::connector_target!(
    ["sendgrid"],
    include_str!("../../config/examples/sendgrid.toml"),
    EXTRA,
);

/// The ECDSA verifier, which the example leaves commented out (SendGrid's documented test key).
const EXTRA: &str = r#"
[[connectors]]
id = "sendgrid-signed"
kind = "sendgrid"
verification_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
"#;
