#![no_main]
//! Stripe: the Stripe-Signature header (t=, v1= list, tolerance) and the event normaliser.

switchboard_fuzz::connector_target!(
    ["stripe"],
    include_str!("../../config/examples/stripe.toml"),
);
