//! Switchboard: an omnichannel integration hub. See DESIGN.md beside the project.

pub mod app;
pub mod auth;
pub mod backfill;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod maintain;
pub mod metrics;
pub mod node;
pub mod outbound;
pub mod pipeline;
pub mod poller;
pub mod registry;
pub mod store;
pub mod suggest;
pub mod telemetry;
pub mod webhooks_out;
