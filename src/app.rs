//! `Application::build(settings)` is the single wiring point for `main` and for tests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::config::Settings;
use crate::domain::{parse_region, ClaimNormalizer, EmailFolding};
use crate::http::{router, AppState};
use crate::ingest::{IngestWriters, Ingestor};
use crate::metrics::Metrics;
use crate::node::{new_node_id, Role, Roles};
use crate::outbound::Sender;
use crate::pipeline::Pipeline;
use crate::poller::PollerRunner;
use crate::registry::Registry;
use crate::store::{Backend, NodeLock, Store};
use crate::suggest::Suggester;
use crate::webhooks_out::Dispatcher;
use switchboard_core::Env;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    writers: IngestWriters,
    pipeline: Arc<Pipeline>,
    sender: Arc<Sender>,
    webhook_dispatcher: Arc<Dispatcher>,
    poller: Arc<PollerRunner>,
    suggester: Arc<Suggester>,
    outbound_enabled: bool,
    /// `database.search_merge_idle_secs` (see [`crate::maintain`]).
    search_merge_idle_secs: u64,
    roles: Roles,
    stopping: watch::Sender<bool>,
    /// SQLite only: held while this node serves, released when it stops.
    node_lock: Option<NodeLock>,
}

/// Builds the connector registry and the claim normaliser from settings (no I/O).
pub fn build_parts(
    settings: &Settings,
    env: Env<'_>,
) -> Result<(Registry, ClaimNormalizer), switchboard_core::ConfigError> {
    let registry = Registry::build(&settings.connectors, env)?;
    let region = parse_region(&settings.identity.default_region).ok_or_else(|| {
        switchboard_core::ConfigError::new("identity.default_region", "not an ISO 3166 region code")
    })?;
    let claims = ClaimNormalizer {
        region,
        folding: EmailFolding {
            plus_addressing: settings.identity.fold_plus_addressing,
            gmail_dots: settings.identity.fold_gmail_dots,
        },
        guards: settings.identity.guards()?,
    };
    Ok((registry, claims))
}

impl Application {
    /// Connects, migrates, builds every connector, binds the listener (port 0 picks a free
    /// port) and starts the ingest writers. Nothing is served until `run_until_stopped`.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with_env(settings, &switchboard_core::config::process_env).await
    }

    pub async fn build_with_env(settings: Settings, env: Env<'_>) -> anyhow::Result<Application> {
        let (registry, claims) =
            build_parts(&settings, env).map_err(|e| anyhow::anyhow!("config: {e}"))?;
        let node_lock = NodeLock::acquire(&settings.database.url)?;
        let node_id = new_node_id();
        let roles = settings.server.roles;
        let store = Store::connect(&settings.database).await?;
        store.migrate().await.context("applying migrations")?;
        if node_lock.is_some() {
            // SQLite, and we hold its node lock: claims left in the file are a killed run's.
            let n = store
                .release_claims_of_dead_run()
                .await
                .context("releasing claims of a previous run")?;
            if n > 0 {
                tracing::warn!(
                    claims = n,
                    "released claims left by a previous run that did not stop cleanly"
                );
            }
        }
        let metrics = Arc::new(Metrics::new(registry.iter().map(|c| c.id.as_str())));
        let wake = Arc::new(Notify::new());
        let writers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => settings.database.writers.max(1),
        };
        let (ingestor, writers) = Ingestor::start(
            store.clone(),
            writers,
            settings.server.ingest_queue,
            settings.server.ingest_batch,
            Duration::from_millis(settings.server.ingest_timeout_ms),
            wake.clone(),
            metrics.clone(),
        );
        let mut pipeline = Pipeline::new(
            store.clone(),
            registry.clone(),
            claims.clone(),
            settings.pipeline.clone(),
            metrics.clone(),
            wake.clone(),
        );
        let poller = Arc::new(PollerRunner::new(
            store.clone(),
            registry.clone(),
            settings.poller.clone(),
            metrics.clone(),
            wake,
            node_id.clone(),
        ));
        if store.backend() == Backend::Sqlite {
            pipeline = pipeline.yield_to_ingest(ingestor.pressure());
        }
        let pipeline = Arc::new(pipeline);
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding server.listen {}", settings.server.listen))?;
        let outbound_wake = Arc::new(Notify::new());
        let sender = Arc::new(
            Sender::new(
                store.clone(),
                registry.clone(),
                settings.outbound.clone(),
                metrics.clone(),
                outbound_wake.clone(),
            )
            .with_event_retention(settings.events.retention_hours),
        );
        let webhook_dispatcher =
            Arc::new(Dispatcher::new(store.clone(), settings.webhooks.clone())?);
        let suggester = Arc::new(Suggester::new(
            store.clone(),
            settings.identity.suggestions.clone(),
        ));
        let (stopping_tx, stopping_rx) = watch::channel(false);
        let state = AppState {
            store,
            registry,
            ingestor,
            metrics,
            claims,
            max_body_bytes: settings.server.max_body_bytes,
            outbound_wake,
            stopping: stopping_rx,
            node_id: node_id.into(),
            roles,
            live: crate::http::live::LiveEvents::default(),
        };
        Ok(Application {
            listener,
            state,
            writers,
            pipeline,
            sender,
            webhook_dispatcher,
            poller,
            suggester,
            outbound_enabled: settings.outbound.enabled,
            search_merge_idle_secs: settings.database.search_merge_idle_secs,
            roles,
            stopping: stopping_tx,
            node_lock,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.clone()
    }

    pub fn sender(&self) -> Arc<Sender> {
        self.sender.clone()
    }

    pub fn webhook_dispatcher(&self) -> Arc<Dispatcher> {
        self.webhook_dispatcher.clone()
    }

    pub fn poller(&self) -> Arc<PollerRunner> {
        self.poller.clone()
    }

    /// This node's id (the owner on the poll leases it holds).
    pub fn node_id(&self) -> &str {
        &self.state.node_id
    }

    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// The wake-ups of this node's SSE streams (bumped by LISTEN/NOTIFY on PostgreSQL).
    pub fn live_events(&self) -> crate::http::live::LiveEvents {
        self.state.live.clone()
    }

    pub fn suggester(&self) -> Arc<Suggester> {
        self.suggester.clone()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests, commits what the
    /// ingest writers hold, lets the pipeline finish its batch, and closes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            writers,
            pipeline,
            sender,
            webhook_dispatcher,
            poller,
            suggester,
            outbound_enabled,
            search_merge_idle_secs,
            roles,
            stopping,
            node_lock,
        } = self;
        let store = state.store.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = (roles.has(Role::Pipeline) && pipeline.enabled())
            .then(|| tokio::spawn(pipeline.clone().run(stop_rx.clone())));
        let sending = (roles.has(Role::Sender) && outbound_enabled)
            .then(|| tokio::spawn(sender.clone().run(stop_rx.clone())));
        let polling = if roles.has(Role::Poller) && poller.enabled() {
            poller.clone().spawn(stop_rx.clone())
        } else {
            Vec::new()
        };
        // The suggester is background processing like the pipeline: the pipeline role.
        let suggesting = (roles.has(Role::Pipeline) && suggester.enabled())
            .then(|| tokio::spawn(suggester.clone().run(stop_rx.clone())));
        // Outgoing webhooks deliver to the outside world like replies do: the sender role.
        let dispatching = (roles.has(Role::Sender) && webhook_dispatcher.enabled())
            .then(|| tokio::spawn(webhook_dispatcher.clone().run(stop_rx.clone())));
        // Idle-time merging of the SQLite search indexes is background work too.
        let upkeep = crate::maintain::SearchUpkeep::new(store.clone(), search_merge_idle_secs);
        let upkeeping = (roles.has(Role::Pipeline) && upkeep.enabled())
            .then(|| tokio::spawn(upkeep.run(stop_rx.clone())));
        // One LISTEN connection per node (PostgreSQL) wakes every local SSE stream when any
        // node appends an event.
        let listening = (roles.has(Role::Api) && store.backend() == Backend::Postgres)
            .then(|| tokio::spawn(state.live.clone().listen(store.clone(), stop_rx)));
        tracing::info!(addr = %listener.local_addr()?, backend = ?store.backend(), connectors = state.registry.len(), node = %state.node_id, roles = %roles, "switchboard listening");
        let app = router(state);
        let shutdown = async move {
            shutdown.await;
            let _ = stopping.send(true);
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        // The router (and every Ingestor clone in it) is gone: the writers drain and stop.
        writers.join().await;
        let _ = stop_tx.send(true);
        pipeline.wake.notify_one();
        sender.wake.notify_one();
        webhook_dispatcher.wake.notify_one();
        suggester.wake.notify_one();
        if let Some(w) = suggesting {
            let _ = w.await;
        }
        if let Some(w) = worker {
            let _ = w.await;
        }
        if let Some(w) = sending {
            let _ = w.await;
        }
        if let Some(w) = dispatching {
            let _ = w.await;
        }
        for w in polling {
            let _ = w.await;
        }
        if let Some(w) = listening {
            let _ = w.await;
        }
        if let Some(w) = upkeeping {
            let _ = w.await;
        }
        store.close().await;
        drop(node_lock);
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested; finishing in-flight work");
}
