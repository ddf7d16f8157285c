-- Inbox: agents, conversation workflow, saved replies, outbound messages (SQLite).

CREATE TABLE agents (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    email      TEXT    NOT NULL UNIQUE,
    role       TEXT    NOT NULL,
    active     INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- A token acts for an agent; tokens made by the CLI or at dev start have none.
ALTER TABLE api_tokens ADD COLUMN agent_id TEXT REFERENCES agents (id);

ALTER TABLE conversations ADD COLUMN assignee_id TEXT REFERENCES agents (id);
ALTER TABLE conversations ADD COLUMN priority TEXT NOT NULL DEFAULT 'none';
ALTER TABLE conversations ADD COLUMN snoozed_until INTEGER;
-- Set when merged into another conversation of the same customer; new messages follow it.
ALTER TABLE conversations ADD COLUMN merged_into TEXT;
CREATE INDEX conversations_status_recent ON conversations (status, last_message_at, id);
CREATE INDEX conversations_snoozed ON conversations (snoozed_until) WHERE status = 'snoozed';

CREATE TABLE conversation_labels (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    label           TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, label)
);

CREATE TABLE saved_replies (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    text       TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE outbound_messages (
    id                  TEXT    PRIMARY KEY,
    conversation_id     TEXT    NOT NULL REFERENCES conversations (id),
    connector_id        TEXT    NOT NULL,
    thread_key          TEXT    NOT NULL,
    text                TEXT    NOT NULL,
    attachments         TEXT    NOT NULL,
    idempotency_key     TEXT    NOT NULL UNIQUE,
    request_hash        TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    locked_until        INTEGER,
    provider_message_id TEXT,
    error               TEXT,
    created_by          TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX outbound_ready ON outbound_messages (next_attempt_at) WHERE state = 'queued';
CREATE INDEX outbound_sending ON outbound_messages (locked_until) WHERE state = 'sending';
CREATE INDEX outbound_provider_id ON outbound_messages (connector_id, provider_message_id);

-- Timeline entries made by people (notes, replies, workflow changes) have no raw event:
-- SQLite cannot drop a NOT NULL, so the table is rebuilt with raw_event_id nullable, an
-- actor, and the outbound message a reply entry stands for.
CREATE TABLE timeline_entries_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    raw_event_id    INTEGER REFERENCES raw_events (id),
    item_index      INTEGER NOT NULL,
    customer_id     TEXT    NOT NULL,
    conversation_id TEXT,
    connector_id    TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    direction       TEXT    NOT NULL,
    occurred_at     INTEGER NOT NULL,
    body            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    actor           TEXT,
    outbound_id     TEXT,
    UNIQUE (raw_event_id, item_index)
);
INSERT INTO timeline_entries_new (id, raw_event_id, item_index, customer_id, conversation_id, connector_id, channel, kind, direction, occurred_at, body, created_at)
    SELECT id, raw_event_id, item_index, customer_id, conversation_id, connector_id, channel, kind, direction, occurred_at, body, created_at FROM timeline_entries;
DROP TABLE timeline_entries;
ALTER TABLE timeline_entries_new RENAME TO timeline_entries;
CREATE INDEX timeline_customer ON timeline_entries (customer_id, occurred_at, id);
CREATE INDEX timeline_conversation ON timeline_entries (conversation_id, occurred_at, id);
