-- Outgoing webhooks (Standard Webhooks format) for CRM/MIS systems. The dispatcher fans the
-- event log out into deliveries, advancing webhook_fanout in the same transaction, so an event
-- is neither skipped nor doubled across restarts; every attempt is kept in webhook_attempts.
CREATE TABLE webhook_subscriptions (
    id                   TEXT    PRIMARY KEY,
    url                  TEXT    NOT NULL,
    events               TEXT    NOT NULL,          -- JSON array of event kinds
    secret               TEXT    NOT NULL,          -- whsec_<base64 key>; never shown again
    active               INTEGER NOT NULL DEFAULT 1,
    from_event_id        INTEGER NOT NULL,          -- delivers events with a greater id
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    paused_at            INTEGER,
    pause_reason         TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              TEXT    PRIMARY KEY,            -- the webhook-id header, stable across retries
    subscription_id TEXT    NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_id        INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    body            TEXT    NOT NULL,               -- the exact JSON body sent on every attempt
    state           TEXT    NOT NULL,               -- pending | sending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER,
    window_start    INTEGER NOT NULL,               -- retries stop window after this (reset by replay)
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_sub ON webhook_deliveries (subscription_id, created_at, id);

CREATE TABLE webhook_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT    NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL,
    attempted_at INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- One row: the last event id fanned out. Starts at the newest event when this migration runs.
CREATE TABLE webhook_fanout (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_event_id INTEGER NOT NULL
);
INSERT INTO webhook_fanout (id, last_event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events;
