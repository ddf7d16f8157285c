-- Where each polling connector resumes: the connector's opaque cursor (e.g. Telegram's next
-- getUpdates offset). Written in the same transaction as the raw events of the page it ends,
-- so a restart neither skips nor repeats a page.
CREATE TABLE poll_cursors (
    connector_id TEXT    PRIMARY KEY,
    cursor       TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL
);
