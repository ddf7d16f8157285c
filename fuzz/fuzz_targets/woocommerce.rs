#![no_main]
//! WooCommerce: X-WC-Webhook-Signature, the ping delivery, and the order/customer normaliser.

switchboard_fuzz::connector_target!(
    ["woocommerce"],
    include_str!("../../config/examples/woocommerce.toml"),
);
