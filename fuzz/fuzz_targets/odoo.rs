#![no_main]
//! Odoo: polled records (JSON-2 and JSON-RPC shapes) through the normaliser; Odoo has no webhook.

switchboard_fuzz::connector_target!(["odoo"], include_str!("../../config/examples/odoo.toml"),);
