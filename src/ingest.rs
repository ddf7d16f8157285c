//! Group commit for webhook ingest. Handlers hand their raw events to a writer task and wait;
//! the writer takes everything that queued up while the previous commit ran and writes it
//! in one transaction. Concurrent requests share one commit (one fsync), so throughput does
//! not collapse to one fsync per request, and no handler is answered before its commit.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use tokio::task::JoinHandle;

use crate::store::{InsertOutcome, NewRawEvent, Store};

struct Pending {
    events: Vec<NewRawEvent>,
    reply: oneshot::Sender<Result<Vec<InsertOutcome>, ()>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The store did not commit (down, or too slow): the provider should retry.
    #[error("store unavailable")]
    Unavailable,
    /// Too many requests already wait for a commit.
    #[error("ingest queue full")]
    Overloaded,
}

#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Pending>,
    timeout: Duration,
    pressure: IngestPressure,
}

/// How busy webhook ingest is, for the SQLite pipeline, which shares the one writer with it
/// and gives it way: small batches while ingest is active, a pause while requests wait.
#[derive(Clone, Debug, Default)]
pub struct IngestPressure {
    /// Requests waiting for a commit right now.
    pub pending: Arc<AtomicUsize>,
    /// When a request last started waiting (ms since the Unix epoch).
    pub last_submit_ms: Arc<AtomicI64>,
}

/// Ingest counts as active this long after its last request.
const ACTIVE_MS: i64 = 100;

impl IngestPressure {
    /// Some request is waiting for a commit now.
    pub fn waiting(&self) -> bool {
        self.waiting_now() > 0
    }

    /// How many requests wait for a commit now.
    pub fn waiting_now(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// A request waits now or started within the last 100 ms. A single reading of `pending`
    /// is not enough: between two group commits of a flood it is often zero for a moment,
    /// and a full-size pipeline batch taken then would hold the writer for 100 ms or more.
    pub fn active(&self) -> bool {
        self.waiting()
            || crate::store::now_ms() - self.last_submit_ms.load(Ordering::Relaxed) <= ACTIVE_MS
    }
}

/// Decrements the pending count however `submit` ends (answer, timeout, or cancellation).
struct PendingGuard(Arc<AtomicUsize>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct IngestWriters {
    handles: Vec<JoinHandle<()>>,
}

impl IngestWriters {
    /// Waits for the writers to finish what was queued (after every `Ingestor` is dropped).
    pub async fn join(self) {
        for h in self.handles {
            let _ = h.await;
        }
    }
}

impl Ingestor {
    /// Starts `writers` writer tasks (1 for SQLite, which has one writer anyway). `wake` is
    /// notified after each commit so the pipeline starts at once.
    pub fn start(
        store: Store,
        writers: usize,
        queue: usize,
        max_batch: usize,
        timeout: Duration,
        wake: Arc<Notify>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> (Ingestor, IngestWriters) {
        let (tx, rx) = mpsc::channel::<Pending>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let handles = (0..writers.max(1))
            .map(|_| {
                tokio::spawn(writer(
                    store.clone(),
                    rx.clone(),
                    max_batch.max(1),
                    wake.clone(),
                    metrics.clone(),
                ))
            })
            .collect();
        (
            Ingestor {
                tx,
                timeout,
                pressure: IngestPressure::default(),
            },
            IngestWriters { handles },
        )
    }

    /// The live view of how busy ingest is.
    pub fn pressure(&self) -> IngestPressure {
        self.pressure.clone()
    }

    /// Stores the events durably (one transaction) and returns one outcome per event.
    pub async fn submit(
        &self,
        events: Vec<NewRawEvent>,
    ) -> Result<Vec<InsertOutcome>, IngestError> {
        self.pressure
            .last_submit_ms
            .store(crate::store::now_ms(), Ordering::Relaxed);
        self.pressure.pending.fetch_add(1, Ordering::Relaxed);
        let _guard = PendingGuard(self.pressure.pending.clone());
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Pending { events, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => IngestError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => IngestError::Unavailable,
            })?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Ok(outcomes))) => Ok(outcomes),
            _ => Err(IngestError::Unavailable),
        }
    }
}

async fn writer(
    store: Store,
    rx: Arc<Mutex<mpsc::Receiver<Pending>>>,
    max_batch: usize,
    wake: Arc<Notify>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let mut batch: Vec<Pending> = Vec::new();
    loop {
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(p) => batch.push(p),
                None => return,
            }
            let mut n = batch[0].events.len();
            while n < max_batch {
                match rx.try_recv() {
                    Ok(p) => {
                        n += p.events.len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
        }
        let sizes: Vec<usize> = batch.iter().map(|p| p.events.len()).collect();
        let mut items = Vec::with_capacity(sizes.iter().sum());
        let mut replies = Vec::with_capacity(batch.len());
        for p in batch.drain(..) {
            items.extend(p.events);
            replies.push(p.reply);
        }
        match store.insert_raw_events(&items).await {
            Ok(outcomes) => {
                metrics.ingest_commits.fetch_add(1, Ordering::Relaxed);
                metrics
                    .ingest_committed_events
                    .fetch_add(items.len() as u64, Ordering::Relaxed);
                let mut it = outcomes.into_iter();
                for (reply, n) in replies.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(it.by_ref().take(n).collect()));
                }
                wake.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %e, events = items.len(), "ingest commit failed; answering 503");
                for reply in replies {
                    let _ = reply.send(Err(()));
                }
            }
        }
    }
}
