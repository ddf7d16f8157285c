-- Business documents (orders, payments, invoices, customer profiles from other systems) are
-- entities: one current copy per (connector, kind, id). `entry_id` is the timeline entry that
-- shows it, updated in place; each newer version that differs adds a `<kind>_changed` entry.
CREATE TABLE entities (
    connector_id TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    entity_id    TEXT    NOT NULL,
    customer_id  TEXT    NOT NULL,
    entry_id     BIGINT  NOT NULL,
    -- The provider's last-modified time of the current copy (unix ms); NULL when it gave none.
    version      BIGINT,
    body         TEXT    NOT NULL,
    -- When the document was created at the provider (or first seen), for listing.
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (connector_id, kind, entity_id)
);
CREATE INDEX entities_customer ON entities (customer_id, kind, created_at);
