-- Switchboard spine schema (PostgreSQL). Times are unix milliseconds.
CREATE TABLE raw_events (
    id                BIGSERIAL PRIMARY KEY,
    connector_id      TEXT    NOT NULL,
    provider_event_id TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    occurred_at       BIGINT,
    received_at       BIGINT  NOT NULL,
    headers           TEXT    NOT NULL,
    payload           BYTEA      NOT NULL,
    UNIQUE (connector_id, provider_event_id)
);
CREATE INDEX raw_events_connector_received ON raw_events (connector_id, received_at);

CREATE TABLE jobs (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT    NOT NULL,
    raw_event_id BIGINT  NOT NULL REFERENCES raw_events (id),
    state        TEXT    NOT NULL,
    attempts     BIGINT  NOT NULL DEFAULT 0,
    run_at       BIGINT  NOT NULL,
    locked_until BIGINT,
    last_error   TEXT,
    created_at   BIGINT  NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX jobs_ready ON jobs (run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_dead ON jobs (id) WHERE state = 'dead';

CREATE TABLE customers (
    id           TEXT    PRIMARY KEY,
    canonical_id TEXT    NOT NULL,
    display_name TEXT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX customers_canonical ON customers (canonical_id);

CREATE TABLE identities (
    id           BIGSERIAL PRIMARY KEY,
    ident_key    TEXT    NOT NULL UNIQUE,
    customer_id  TEXT    NOT NULL REFERENCES customers (id),
    kind         TEXT    NOT NULL,
    scope        TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    connector_id TEXT    NOT NULL,
    raw_event_id BIGINT,
    first_seen   BIGINT  NOT NULL,
    last_seen    BIGINT  NOT NULL
);
CREATE INDEX identities_customer ON identities (customer_id);
CREATE INDEX identities_kind_value ON identities (kind, value);

CREATE TABLE customer_merges (
    id           TEXT    PRIMARY KEY,
    survivor_id  TEXT    NOT NULL,
    merged_id    TEXT    NOT NULL,
    actor        TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    evidence     TEXT    NOT NULL,
    raw_event_id BIGINT,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX customer_merges_survivor ON customer_merges (survivor_id);
CREATE INDEX customer_merges_merged ON customer_merges (merged_id);

CREATE TABLE conversations (
    id              TEXT    PRIMARY KEY,
    conv_key        TEXT    NOT NULL UNIQUE,
    connector_id    TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    thread_key      TEXT    NOT NULL,
    customer_id     TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    last_message_at BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX conversations_recent ON conversations (last_message_at, id);
CREATE INDEX conversations_customer ON conversations (customer_id);

CREATE TABLE timeline_entries (
    id              BIGSERIAL PRIMARY KEY,
    raw_event_id    BIGINT  NOT NULL REFERENCES raw_events (id),
    item_index      BIGINT  NOT NULL,
    customer_id     TEXT    NOT NULL,
    conversation_id TEXT,
    connector_id    TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    direction       TEXT    NOT NULL,
    occurred_at     BIGINT  NOT NULL,
    body            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    UNIQUE (raw_event_id, item_index)
);
CREATE INDEX timeline_customer ON timeline_entries (customer_id, occurred_at, id);
CREATE INDEX timeline_conversation ON timeline_entries (conversation_id, occurred_at, id);

CREATE TABLE api_tokens (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT
);
