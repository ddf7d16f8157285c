use std::process::ExitCode;

use clap::Parser;
use switchboard::app::{build_parts, shutdown_signal, Application};
use switchboard::cli::{Cli, Command, TokenCommand};
use switchboard::config::{self, LogFormat, Settings};
use switchboard::pipeline::Pipeline;
use switchboard::store::Store;
use switchboard::{auth, metrics, telemetry};

/// mimalloc instead of glibc malloc: the request path allocates a lot of small, short-lived
/// buffers (headers, JSON values, SQL binds), and glibc's malloc/free showed up as ~13% of
/// the hub's CPU under a webhook flood.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli, path: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    let path = config::config_path(path.or(cli.config.as_deref()));
    config::load(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::CheckConfig { path } = &cli.command {
        let file = config::config_path(path.as_deref().or(cli.config.as_deref()));
        let settings = match config::load(&file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return Ok(ExitCode::FAILURE);
            }
        };
        return Ok(
            match build_parts(&settings, &switchboard_core::config::process_env) {
                Ok((registry, _)) => {
                    println!("{}: ok ({} connector(s))", file.display(), registry.len());
                    for c in registry.iter() {
                        let mut does = Vec::new();
                        if c.connector.webhook().is_some() {
                            does.push(format!("webhooks at /webhooks/{}", c.id));
                        }
                        if c.connector.poller().is_some() {
                            does.push("polls".to_string());
                        }
                        if c.connector.outbound().is_some() {
                            does.push("sends replies".to_string());
                        }
                        println!("  {} ({}): {}", c.id, c.kind, does.join(", "));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    ExitCode::FAILURE
                }
            },
        );
    }

    if let Command::Openapi = &cli.command {
        println!("{}", switchboard::http::openapi().to_pretty_json()?);
        return Ok(ExitCode::SUCCESS);
    }
    let settings = load(&cli, None)?;
    let format = cli.log_format.unwrap_or(settings.log.format);
    telemetry::init(format, &settings.log.level);

    match cli.command {
        Command::CheckConfig { .. } | Command::Openapi => unreachable!("handled above"),
        Command::Serve { roles } => {
            let mut settings = settings;
            if let Some(roles) = roles {
                settings.server.roles = roles;
            }
            let print_dev_token = settings.auth.print_dev_token;
            let app = Application::build(settings).await?;
            if print_dev_token {
                let token = auth::create_token(&app.store(), "dev", auth::Role::Admin).await?;
                if format == LogFormat::Text {
                    println!("development admin token (auth.print_dev_token = true):");
                }
                println!("{token}");
            }
            app.run_until_stopped(shutdown_signal()).await?;
        }
        Command::Migrate => {
            let store = Store::connect(&settings.database).await?;
            let applied = store.migrate().await?;
            println!("migrations applied: {applied:?}");
        }
        Command::Token {
            command: TokenCommand::Create { name, role },
        } => {
            let store = Store::connect(&settings.database).await?;
            store.migrate().await?;
            let token = auth::create_token(&store, &name, role).await?;
            println!(
                "token `{name}` ({}) created; it is shown only now:",
                role.as_str()
            );
            println!("{token}");
        }
        Command::Replay { connector, since } => {
            let since_ms = match since {
                Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
                    .map_err(|e| anyhow::anyhow!("--since `{s}` is not RFC 3339: {e}"))?
                    .timestamp_millis(),
                None => 0,
            };
            let (registry, claims) = build_parts(&settings, &switchboard_core::config::process_env)
                .map_err(|e| anyhow::anyhow!("config: {e}"))?;
            if registry.get(&connector).is_none() {
                anyhow::bail!("connector `{connector}` is not in the config");
            }
            let store = Store::connect(&settings.database).await?;
            store.migrate().await?;
            let n = store.enqueue_replay(&connector, since_ms).await?;
            let metrics = std::sync::Arc::new(metrics::Metrics::new(
                registry.iter().map(|c| c.id.as_str()),
            ));
            let pipeline = Pipeline::new(
                store.clone(),
                registry,
                claims,
                settings.pipeline.clone(),
                metrics,
                Default::default(),
            );
            let handled = pipeline.drain().await?;
            println!("replayed {n} raw event(s) of `{connector}`; {handled} job(s) processed");
            store.close().await;
        }
        Command::Backfill {
            connector,
            since,
            restart,
        } => {
            let since_ms = parse_date(&since)?;
            let (registry, claims) = build_parts(&settings, &switchboard_core::config::process_env)
                .map_err(|e| anyhow::anyhow!("config: {e}"))?;
            let Some(inst) = registry.get(&connector).cloned() else {
                anyhow::bail!("connector `{connector}` is not in the config");
            };
            let store = Store::connect(&settings.database).await?;
            store.migrate().await?;
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let report = switchboard::backfill::run(&store, &inst, since_ms, restart, None, |r| {
                let secs = r.elapsed.as_secs_f64().max(0.001);
                let line = format!(
                    "{} {} page(s), {} new, {} already here, {:.0} events/s",
                    if r.resumed { "resumed:" } else { "backfill:" },
                    r.pages,
                    r.accepted,
                    r.duplicate,
                    (r.accepted + r.duplicate) as f64 / secs
                );
                if tty {
                    eprint!("\r{line}\x1b[K");
                } else if r.pages % 20 == 0 || r.done {
                    eprintln!("{line}");
                }
            })
            .await;
            if tty {
                eprintln!();
            }
            let report = report?;
            let metrics = std::sync::Arc::new(metrics::Metrics::new(
                registry.iter().map(|c| c.id.as_str()),
            ));
            let pipeline = Pipeline::new(
                store.clone(),
                registry,
                claims,
                settings.pipeline.clone(),
                metrics,
                Default::default(),
            );
            let handled = pipeline.drain().await?;
            println!(
                "backfilled `{connector}`: {} page(s), {} new event(s), {} already present, in {:.1} s; {handled} job(s) normalised",
                report.pages,
                report.accepted,
                report.duplicate,
                report.elapsed.as_secs_f64()
            );
            store.close().await;
        }
        Command::Jobs { dead, limit } => {
            let store = Store::connect(&settings.database).await?;
            let q = store.queue_stats().await?;
            println!(
                "queued {} running {} dead {} (oldest queued {} ms)",
                q.queued, q.running, q.dead, q.oldest_queued_ms
            );
            if dead {
                for j in store.dead_jobs(limit).await? {
                    println!(
                        "job {} raw_event {} {}/{} attempts {}: {}",
                        j.id,
                        j.raw_event_id,
                        j.connector_id,
                        j.provider_event_id,
                        j.attempts,
                        j.last_error.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339, as unix ms.
fn parse_date(s: &str) -> anyhow::Result<i64> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| anyhow::anyhow!("--since `{s}` is neither YYYY-MM-DD nor RFC 3339"))
}
