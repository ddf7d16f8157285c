//! Live wake-ups for SSE streams. On PostgreSQL every node keeps one `LISTEN` connection on
//! the `switchboard_events` channel (a statement trigger on `events` notifies at commit, see
//! migration 0012), and each notification wakes every SSE stream of this node at once, so an
//! event appended on any node reaches clients on every node promptly. Streams still look at
//! the log on a slow timer, which covers a lost listener (it reconnects by itself) and SQLite,
//! where the only writer is this node.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;

/// The channel the `events` trigger notifies.
pub const CHANNEL: &str = "switchboard_events";

/// How often a stream looks at the log while the listener is up: only a fallback.
pub const SLOW_POLL: Duration = Duration::from_secs(2);
/// How often it looks without a listener (SQLite, or PostgreSQL while it reconnects).
pub const FAST_POLL: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct LiveEvents {
    /// Bumped on every notification (and after a reconnect, which may have missed some);
    /// each stream holds a receiver and looks at the log when it changes.
    version: Arc<watch::Sender<u64>>,
    listening: Arc<AtomicBool>,
}

impl Default for LiveEvents {
    fn default() -> Self {
        LiveEvents {
            version: Arc::new(watch::channel(0).0),
            listening: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl LiveEvents {
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The fallback poll interval right now.
    pub fn poll_interval(&self) -> Duration {
        if self.listening.load(Ordering::Relaxed) {
            SLOW_POLL
        } else {
            FAST_POLL
        }
    }

    /// Whether a LISTEN connection is up (for tests and diagnostics).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    fn wake(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Listens until `stop` turns true (PostgreSQL only; returns at once on SQLite). A lost
    /// connection is re-established, with a pause after a failure; streams poll fast meanwhile.
    pub async fn listen(self, store: Store, mut stop: watch::Receiver<bool>) {
        let Some(pool) = store.pg_pool().cloned() else {
            return;
        };
        while !*stop.borrow() {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut l) => match l.listen(CHANNEL).await {
                    Ok(()) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN for live events failed; retrying");
                        if pause(&mut stop).await {
                            break;
                        }
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "no connection for live events; retrying");
                    if pause(&mut stop).await {
                        break;
                    }
                    continue;
                }
            };
            self.listening.store(true, Ordering::Relaxed);
            // Anything appended before LISTEN took effect is found by this look.
            self.wake();
            tracing::debug!("listening for live events");
            loop {
                let r = tokio::select! {
                    r = listener.try_recv() => r,
                    _ = stop.changed() => break,
                };
                match r {
                    Ok(Some(_)) => {
                        // Coalesce a burst: one look at the log serves them all.
                        while listener.next_buffered().is_some() {}
                        self.wake();
                    }
                    Ok(None) => {
                        // Reconnected (sqlx does it eagerly); notifications may have been
                        // missed meanwhile.
                        tracing::info!("live events listener reconnected");
                        self.wake();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "live events listener lost; reconnecting");
                        break;
                    }
                }
            }
            self.listening.store(false, Ordering::Relaxed);
            self.wake();
            if *stop.borrow() || pause(&mut stop).await {
                break;
            }
        }
    }
}

/// Waits a second before a retry; true when stopping.
async fn pause(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
