#![no_main]
//! The email connector's normaliser and attachment extraction over raw RFC 5322 bytes as the IMAP poller stores them.

switchboard_fuzz::connector_target!(["email"], include_str!("../../config/examples/email.toml"),);
