//! The IMAP poller. Cursor = JSON of per-mailbox `(uidvalidity, last_uid)`. Each poll imports
//! at most `batch_size` messages (fewer when they are large) in UID order and says `more` while
//! some remain; with nothing new it waits in IDLE (bounded by `idle_timeout_secs`) when the
//! server offers it. A changed UIDVALIDITY resyncs the mailbox from the backfill window: the
//! raw events keep their ids (the Message-ID), so the hub stores nothing twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use switchboard_core::{ConnectorError, PollPage, Poller, RawEvent};

use crate::config::ImapSettings;
use crate::imap::{self, step, Session};
use crate::mime;

/// Bytes fetched per page at most (the first message always, whatever its size).
const MAX_PAGE_BYTES: u64 = 64 * 1024 * 1024;
/// A body fetch may take this long (large messages on a slow link).
const BODY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImapCursor {
    pub mailboxes: BTreeMap<String, MailboxState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxState {
    pub uidvalidity: u32,
    pub last_uid: u32,
}

const IDLE_UNKNOWN: u8 = 0;
const IDLE_YES: u8 = 1;
const IDLE_NO: u8 = 2;

pub struct ImapPoller {
    s: ImapSettings,
    /// The session kept between polls (dropped on any error; the next poll reconnects).
    session: tokio::sync::Mutex<Option<Session>>,
    idle: AtomicU8,
}

impl ImapPoller {
    pub fn new(s: ImapSettings) -> Self {
        ImapPoller {
            s,
            session: tokio::sync::Mutex::new(None),
            idle: AtomicU8::new(IDLE_UNKNOWN),
        }
    }

    async fn connect(&self) -> Result<Session, ConnectorError> {
        let mut session = imap::connect(&self.s).await?;
        let caps = step("CAPABILITY", session.capabilities()).await?;
        self.idle.store(
            if caps.has_str("IDLE") {
                IDLE_YES
            } else {
                IDLE_NO
            },
            Ordering::Relaxed,
        );
        Ok(session)
    }

    async fn run(
        &self,
        slot: &mut Option<Session>,
        cur: &mut ImapCursor,
    ) -> Result<PollPage, ConnectorError> {
        if slot.is_none() {
            *slot = Some(self.connect().await?);
        }
        let Some(session) = slot.as_mut() else {
            return Err(ConnectorError::Transient("IMAP session missing".into()));
        };
        let mut budget = self.s.batch_size as usize;
        let mut events = Vec::new();
        let mut more = false;
        for mbox in &self.s.mailboxes {
            if budget == 0 {
                more = true;
                break;
            }
            let m = step("SELECT", session.select(mbox)).await?;
            let validity = m.uid_validity.unwrap_or(0);
            let prev = cur
                .mailboxes
                .get(mbox)
                .copied()
                .filter(|p| p.uidvalidity == validity);
            let query = match prev {
                Some(p) => format!("UID {}:*", p.last_uid.saturating_add(1)),
                None if self.s.backfill_days > 0 => {
                    let since = chrono::Utc::now()
                        - chrono::Duration::days(i64::from(self.s.backfill_days));
                    format!("SINCE {}", since.format("%-d-%b-%Y"))
                }
                None => "ALL".into(),
            };
            let floor = prev.map_or(0, |p| p.last_uid);
            let mut uids: Vec<u32> = step("SEARCH", session.uid_search(&query))
                .await?
                .into_iter()
                .filter(|u| *u > floor)
                .collect();
            uids.sort_unstable();
            let mut last = floor;
            let candidates = &uids[..uids.len().min(budget)];
            let (page, done_through) = self.fetch(session, mbox, validity, candidates).await?;
            budget = budget.saturating_sub(page.len());
            events.extend(page);
            if let Some(u) = done_through {
                last = last.max(u);
            }
            if done_through.map_or(0, |u| u) < uids.last().copied().unwrap_or(0) {
                more = true;
            } else if let Some(n) = m.uid_next {
                // Everything below UIDNEXT at SELECT is seen (or outside the backfill window).
                last = last.max(n.saturating_sub(1));
            }
            cur.mailboxes.insert(
                mbox.clone(),
                MailboxState {
                    uidvalidity: validity,
                    last_uid: last,
                },
            );
            while session.unsolicited_responses.try_recv().is_ok() {}
        }
        if events.is_empty()
            && !more
            && self.s.idle
            && self.idle.load(Ordering::Relaxed) == IDLE_YES
        {
            more = self.idle_wait(slot).await?;
        }
        Ok(PollPage {
            events,
            next_cursor: Some(serde_json::to_string(cur).unwrap_or_default()),
            more,
        })
    }

    /// Fetches the candidates in UID order, as many as fit in a page; returns the events and
    /// the highest UID handled (a vanished message counts as handled).
    async fn fetch(
        &self,
        session: &mut Session,
        mbox: &str,
        validity: u32,
        uids: &[u32],
    ) -> Result<(Vec<RawEvent>, Option<u32>), ConnectorError> {
        if uids.is_empty() {
            return Ok((Vec::new(), None));
        }
        let set = uid_set(uids);
        let sizes: BTreeMap<u32, (u64, Option<i64>)> = step("FETCH sizes", async {
            let mut st = session
                .uid_fetch(&set, "(UID RFC822.SIZE INTERNALDATE)")
                .await?;
            let mut out = BTreeMap::new();
            while let Some(f) = st.try_next().await? {
                if let Some(uid) = f.uid {
                    let at = f.internal_date().map(|d| d.timestamp_millis());
                    out.insert(uid, (u64::from(f.size.unwrap_or(0)), at));
                }
            }
            Ok::<_, async_imap::error::Error>(out)
        })
        .await?;
        // The page: UIDs in order while their bytes fit.
        let mut page: Vec<u32> = Vec::new();
        let mut bytes = 0u64;
        for u in uids {
            let size = sizes.get(u).map_or(0, |(s, _)| *s);
            let cost = if size > self.s.max_message_bytes {
                64 * 1024
            } else {
                size
            };
            if !page.is_empty() && bytes + cost > MAX_PAGE_BYTES {
                break;
            }
            bytes += cost;
            page.push(*u);
        }
        let Some(&through) = page.last() else {
            return Ok((Vec::new(), None));
        };
        let (small, large): (Vec<u32>, Vec<u32>) = page
            .iter()
            .filter(|u| sizes.contains_key(u))
            .partition(|u| {
                sizes
                    .get(u)
                    .is_none_or(|(s, _)| *s <= self.s.max_message_bytes)
            });
        let mut bodies: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for (set, query, header_only) in [
            (small, "(UID BODY.PEEK[])", false),
            (large, "(UID BODY.PEEK[HEADER])", true),
        ] {
            if set.is_empty() {
                continue;
            }
            let set = uid_set(&set);
            let got = match tokio::time::timeout(BODY_TIMEOUT, async {
                let mut st = session.uid_fetch(&set, query).await?;
                let mut out = Vec::new();
                while let Some(f) = st.try_next().await? {
                    let b = if header_only { f.header() } else { f.body() };
                    if let (Some(uid), Some(b)) = (f.uid, b) {
                        out.push((uid, b.to_vec()));
                    }
                }
                Ok::<_, async_imap::error::Error>(out)
            })
            .await
            {
                Ok(r) => r.map_err(|e| imap::ImapFailure::from(e).into_connector("FETCH"))?,
                Err(_) => return Err(ConnectorError::Transient("IMAP FETCH: timed out".into())),
            };
            bodies.extend(got);
        }
        let mut events = Vec::with_capacity(page.len());
        for uid in &page {
            let Some(body) = bodies.remove(uid) else {
                continue; // expunged meanwhile
            };
            let (size, at) = sizes.get(uid).copied().unwrap_or((0, None));
            let mut headers = vec![
                ("x-sb-mailbox".to_string(), mbox.to_string()),
                ("x-sb-uidvalidity".to_string(), validity.to_string()),
                ("x-sb-uid".to_string(), uid.to_string()),
            ];
            if size > self.s.max_message_bytes {
                headers.push(("x-sb-truncated".to_string(), size.to_string()));
            }
            events.push(RawEvent {
                provider_event_id: mime::event_id(&body),
                kind: "message".into(),
                occurred_at: at,
                payload: body.into(),
                headers,
            });
        }
        Ok((events, Some(through)))
    }

    /// Waits in IDLE on the first mailbox, bounded; true when the server reported a change.
    async fn idle_wait(&self, slot: &mut Option<Session>) -> Result<bool, ConnectorError> {
        let Some(mut session) = slot.take() else {
            return Ok(false);
        };
        if let Some(first) = self.s.mailboxes.first() {
            if self.s.mailboxes.len() > 1 {
                step("SELECT", session.select(first)).await?;
            }
        }
        let mut handle = session.idle();
        step("IDLE", handle.init()).await?;
        let wait = Duration::from_secs(self.s.idle_timeout_secs);
        let changed = {
            let (fut, _stop) = handle.wait_with_timeout(wait);
            match tokio::time::timeout(wait + Duration::from_secs(5), fut).await {
                Ok(Ok(async_imap::extensions::idle::IdleResponse::NewData(_))) => true,
                Ok(Ok(_)) | Err(_) => false,
                Ok(Err(e)) => return Err(imap::ImapFailure::from(e).into_connector("IDLE")),
            }
        };
        let session = step("DONE", handle.done()).await?;
        *slot = Some(session);
        Ok(changed)
    }
}

/// `1,2,5:9` style set (sorted input).
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.saturating_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[async_trait]
impl Poller for ImapPoller {
    async fn poll(&self, cursor: Option<String>) -> Result<PollPage, ConnectorError> {
        // An unreadable cursor starts over: the backfill resync stores nothing twice.
        let start: ImapCursor = cursor
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or_default();
        let mut slot = self.session.lock().await;
        let reused = slot.is_some();
        let mut cur = start.clone();
        match self.run(&mut slot, &mut cur).await {
            Ok(page) => Ok(page),
            // A kept session may have been closed by the server meanwhile: one fresh try.
            Err(ConnectorError::Transient(_)) if reused => {
                *slot = None;
                let mut cur = start;
                let r = self.run(&mut slot, &mut cur).await;
                if r.is_err() {
                    *slot = None;
                }
                r
            }
            Err(e) => {
                *slot = None;
                Err(e)
            }
        }
    }

    fn interval(&self) -> Duration {
        if self.s.idle && self.idle.load(Ordering::Relaxed) == IDLE_YES {
            // Each poll already waited in IDLE.
            Duration::from_secs(1)
        } else {
            Duration::from_secs(self.s.poll_interval_secs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn cursor_is_json_per_mailbox() {
        let mut c = ImapCursor::default();
        c.mailboxes.insert(
            "INBOX".into(),
            MailboxState {
                uidvalidity: 7,
                last_uid: 42,
            },
        );
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(
            j,
            r#"{"mailboxes":{"INBOX":{"uidvalidity":7,"last_uid":42}}}"#
        );
        assert_eq!(serde_json::from_str::<ImapCursor>(&j).unwrap(), c);
    }
}
