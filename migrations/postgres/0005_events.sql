-- The event log behind live updates (SSE) and outgoing webhooks. Written in the same
-- transaction as the change it reports, so no change goes unannounced; kept for
-- `events.retention_hours` so a client resuming with Last-Event-ID sees no gap.
CREATE TABLE events (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT   NOT NULL,
    conversation_id TEXT,
    customer_id     TEXT,
    payload         TEXT   NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX events_created ON events (created_at);
