#![no_main]
//! Telegram: the secret-token header check, update parsing and the normaliser (webhook and poll mode).

switchboard_fuzz::connector_target!(
    ["telegram"],
    include_str!("../../config/examples/telegram.toml"),
);
