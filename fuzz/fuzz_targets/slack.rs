#![no_main]
//! Slack: v0 signatures with the timestamp window, url_verification, form-encoded commands and interactivity, and the normaliser.

switchboard_fuzz::connector_target!(["slack"], include_str!("../../config/examples/slack.toml"),);
