//! The command line. `switchboard --help` documents every command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::Role;
use crate::config::LogFormat;
use crate::node::Roles;

fn parse_roles(s: &str) -> Result<Roles, String> {
    Roles::parse(s)
}

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Omnichannel integration hub: connectors in, one customer timeline, inbox API out."
)]
#[command(
    after_help = "Config: --config PATH, else $SWITCHBOARD_CONFIG, else config/switchboard.toml. \
Any key can be overridden by SWITCHBOARD_<SECTION>__<KEY>, e.g. SWITCHBOARD_DATABASE__URL=postgres://… \
Any secret key `foo` may be given as `foo_env = \"VAR\"`."
)]
pub struct Cli {
    /// Config file (TOML).
    #[arg(long, short, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format: text for people, json for log collectors.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: webhooks, pipeline and API. Applies migrations first.
    ///
    /// Several nodes may serve one PostgreSQL database; each runs the roles it is given.
    /// /healthz, /readyz and /metrics are served whatever the roles.
    Serve {
        /// What this node runs (comma-separated; default all, or `server.roles`):
        /// api = /api/v1 (inbox API, SSE); ingest = /webhooks; pipeline = the normalise
        /// worker; sender = replies and outgoing webhooks; poller = connector polling (one
        /// node at a time per connector, under a lease).
        #[arg(long, value_name = "ROLES", value_parser = parse_roles)]
        roles: Option<Roles>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Validate a config file without starting anything; names the exact key that is wrong.
    CheckConfig {
        /// The file to check (default: --config, $SWITCHBOARD_CONFIG, config/switchboard.toml).
        path: Option<PathBuf>,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Re-normalise stored raw events of a connector; the timeline ends the same, without
    /// duplicates.
    Replay {
        /// Connector id, as in /webhooks/{id}.
        #[arg(long)]
        connector: String,
        /// Only events received at or after this time (RFC 3339).
        #[arg(long, value_name = "RFC3339")]
        since: Option<String>,
    },
    /// Import a connector's history from its provider (orders, payments, documents …) from a
    /// date on, with progress on stderr. Interrupted, it resumes where it stopped when run
    /// again; events the hub already has are not imported twice. The imported events are
    /// normalised before it exits.
    Backfill {
        /// Connector id, as in /webhooks/{id}.
        #[arg(long)]
        connector: String,
        /// Start of the history to import: a date (YYYY-MM-DD, UTC) or RFC 3339.
        #[arg(long, value_name = "DATE")]
        since: String,
        /// Discard an interrupted backfill and start again at --since.
        #[arg(long)]
        restart: bool,
    },
    /// Print the API's OpenAPI 3.1 document (also served at /api/v1/openapi.json).
    Openapi,
    /// Inspect the job queue.
    Jobs {
        /// List jobs parked as dead, with their last error.
        #[arg(long)]
        dead: bool,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once, alone on the last line, and stored hashed.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
    },
}
