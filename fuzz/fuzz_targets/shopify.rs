#![no_main]
//! Shopify: X-Shopify-Hmac-Sha256, topic headers and the order/customer normaliser.

switchboard_fuzz::connector_target!(
    ["shopify"],
    include_str!("../../config/examples/shopify.toml"),
);
