#![no_main]
//! Meta (Messenger, Instagram, WhatsApp): X-Hub-Signature-256, the hub.challenge handshake, batch splitting, and the three normalisers.

switchboard_fuzz::connector_target!(
    ["messenger", "instagram", "whatsapp"],
    include_str!("../../config/examples/messenger.toml"),
    include_str!("../../config/examples/instagram.toml"),
    include_str!("../../config/examples/whatsapp.toml"),
);
