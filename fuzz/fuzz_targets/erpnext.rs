#![no_main]
//! ERPNext: X-Frappe-Webhook-Signature, doc events and the normaliser.

switchboard_fuzz::connector_target!(
    ["erpnext"],
    include_str!("../../config/examples/erpnext.toml"),
);
