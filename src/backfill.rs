//! `switchboard backfill --connector ID --since DATE`: imports a connector's history by walking
//! its poller from a backfill cursor (`Poller::backfill_cursor`) until the provider has no
//! more. Each page is stored with the backfill's own cursor (key `backfill:<id>`) in one
//! transaction, so an interrupted backfill resumes where it stopped and imports each event
//! exactly once; the live poller's cursor is never touched. Rate limits are honoured: calls
//! go at most `poll_rate_per_sec`, and a `RateLimited` answer waits as long as the provider says.

use std::time::{Duration, Instant};

use switchboard_core::{ConnectorError, PollPage};

use crate::registry::ConnectorInstance;
use crate::store::{now_ms, InsertOutcome, NewRawEvent, Store};

/// Where a backfill is, reported after every page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillReport {
    /// Resumed an interrupted backfill instead of starting at `since`.
    pub resumed: bool,
    pub pages: u64,
    /// Events stored for the first time.
    pub accepted: u64,
    /// Events the hub already had (from webhooks, the poller, or an earlier run).
    pub duplicate: u64,
    pub elapsed: Duration,
    /// The provider has nothing more: the backfill is complete.
    pub done: bool,
}

/// The cursor key of a connector's backfill.
pub fn cursor_key(connector_id: &str) -> String {
    format!("backfill:{connector_id}")
}

/// Gives up after this many failures in a row (transient errors and rate limits wait and
/// retry; a refusal of our credentials or a permanent error stops at once).
const MAX_FAILURES: u32 = 8;

/// Runs (or resumes) the backfill of `inst` from `since_ms`; `restart` discards an
/// interrupted one. `progress` is called after every stored page. Stops after `max_pages`
/// pages when given (the backfill stays resumable), else when the provider has no more.
pub async fn run(
    store: &Store,
    inst: &ConnectorInstance,
    since_ms: i64,
    restart: bool,
    max_pages: Option<u64>,
    mut progress: impl FnMut(&BackfillReport),
) -> anyhow::Result<BackfillReport> {
    let Some(poller) = inst.connector.poller() else {
        anyhow::bail!(
            "connector `{}` ({}) does not poll, so it cannot backfill",
            inst.id,
            inst.kind
        );
    };
    let key = cursor_key(&inst.id);
    if restart {
        store.delete_poll_cursor(&key).await?;
    }
    let mut report = BackfillReport::default();
    let mut cursor = match store.poll_cursor(&key).await? {
        Some(c) => {
            report.resumed = true;
            c
        }
        None => poller.backfill_cursor(since_ms).ok_or_else(|| {
            anyhow::anyhow!(
                "connector `{}` ({}) cannot backfill history",
                inst.id,
                inst.kind
            )
        })?,
    };
    let started = Instant::now();
    let mut failures = 0u32;
    let limiter = crate::outbound::limiter(inst.poll_rate_per_sec, 1);
    loop {
        if max_pages.is_some_and(|m| report.pages >= m) {
            break;
        }
        limiter.until_ready().await;
        let page: PollPage = match poller.poll(Some(cursor.clone())).await {
            Ok(p) => {
                failures = 0;
                p
            }
            Err(e) => {
                failures += 1;
                let wait = match &e {
                    ConnectorError::RateLimited { retry_after } => {
                        retry_after.unwrap_or(Duration::from_secs(1))
                    }
                    ConnectorError::Transient(_) if failures < MAX_FAILURES => {
                        Duration::from_millis(250 * (1u64 << failures.min(6)))
                    }
                    _ => anyhow::bail!(
                        "backfill of `{}` stopped after {} page(s): {e}; run it again to resume",
                        inst.id,
                        report.pages
                    ),
                };
                if failures >= MAX_FAILURES * 4 {
                    anyhow::bail!("backfill of `{}` kept failing: {e}", inst.id);
                }
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let now = now_ms();
        let more = page.more;
        let rows: Vec<NewRawEvent> = page
            .events
            .into_iter()
            .map(|e| NewRawEvent::received(&inst.id, e, now))
            .collect();
        let next = page.next_cursor.unwrap_or_else(|| cursor.clone());
        let outcomes = store.insert_polled(&key, &rows, Some(&next)).await?;
        let accepted = outcomes
            .iter()
            .filter(|o| matches!(o, InsertOutcome::Accepted(_)))
            .count() as u64;
        report.pages += 1;
        report.accepted += accepted;
        report.duplicate += outcomes.len() as u64 - accepted;
        report.elapsed = started.elapsed();
        let stalled = rows.is_empty() && next == cursor;
        cursor = next;
        if !more || stalled {
            report.done = true;
            store.delete_poll_cursor(&key).await?;
            progress(&report);
            break;
        }
        progress(&report);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
