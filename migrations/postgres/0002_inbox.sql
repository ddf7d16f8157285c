-- Inbox: agents, conversation workflow, saved replies, outbound messages (PostgreSQL).

CREATE TABLE agents (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    email      TEXT    NOT NULL UNIQUE,
    role       TEXT    NOT NULL,
    active     BIGINT  NOT NULL DEFAULT 1,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);

-- A token acts for an agent; tokens made by the CLI or at dev start have none.
ALTER TABLE api_tokens ADD COLUMN agent_id TEXT REFERENCES agents (id);

ALTER TABLE conversations ADD COLUMN assignee_id TEXT REFERENCES agents (id);
ALTER TABLE conversations ADD COLUMN priority TEXT NOT NULL DEFAULT 'none';
ALTER TABLE conversations ADD COLUMN snoozed_until BIGINT;
-- Set when merged into another conversation of the same customer; new messages follow it.
ALTER TABLE conversations ADD COLUMN merged_into TEXT;
CREATE INDEX conversations_status_recent ON conversations (status, last_message_at, id);
CREATE INDEX conversations_snoozed ON conversations (snoozed_until) WHERE status = 'snoozed';

CREATE TABLE conversation_labels (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    label           TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (conversation_id, label)
);

CREATE TABLE saved_replies (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    text       TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
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
    attempts            BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT  NOT NULL,
    locked_until        BIGINT,
    provider_message_id TEXT,
    error               TEXT,
    created_by          TEXT    NOT NULL,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL
);
CREATE INDEX outbound_ready ON outbound_messages (next_attempt_at) WHERE state = 'queued';
CREATE INDEX outbound_sending ON outbound_messages (locked_until) WHERE state = 'sending';
CREATE INDEX outbound_provider_id ON outbound_messages (connector_id, provider_message_id);

-- Timeline entries made by people (notes, replies, workflow changes) have no raw event.
ALTER TABLE timeline_entries ALTER COLUMN raw_event_id DROP NOT NULL;
ALTER TABLE timeline_entries ADD COLUMN actor TEXT;
ALTER TABLE timeline_entries ADD COLUMN outbound_id TEXT;
