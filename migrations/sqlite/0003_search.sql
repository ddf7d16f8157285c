-- Full-text search (SQLite FTS5) over message/note text, customer names and identity values,
-- for `GET /api/v1/search`. Every index is kept in step by triggers, so whatever writes the
-- base tables (pipeline, replay, merges, future erasure) needs no search code; the backfill at
-- the end indexes the history that existed before this migration.
--
-- Tokenizer: unicode61 (Unicode word boundaries, case folding for every script) with
-- remove_diacritics 2, so `jose` finds `José`. No stemming: the channels carry every
-- language, and an English stemmer would mangle the rest. The PostgreSQL side uses the
-- `simple` configuration for the same reason.

-- Timeline text. External content: the text is not stored twice; FTS5 reads it back from this
-- view (by rowid = timeline_entries.id) only for snippets. Only entries whose body has a string
-- `text` (messages, notes) are indexed; the triggers use the same predicate as the view, which
-- an external-content table needs (a 'delete' must repeat exactly what was indexed).
CREATE VIEW search_entry_text AS
    SELECT id, json_extract(body, '$.text') AS text FROM timeline_entries
    WHERE CASE WHEN json_valid(body) THEN json_type(body, '$.text') END = 'text';

CREATE VIRTUAL TABLE search_entries USING fts5(
    text,
    content = 'search_entry_text',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER search_entries_insert AFTER INSERT ON timeline_entries
WHEN CASE WHEN json_valid(new.body) THEN json_type(new.body, '$.text') END = 'text'
BEGIN
    INSERT INTO search_entries (rowid, text) VALUES (new.id, json_extract(new.body, '$.text'));
END;

CREATE TRIGGER search_entries_delete AFTER DELETE ON timeline_entries
WHEN CASE WHEN json_valid(old.body) THEN json_type(old.body, '$.text') END = 'text'
BEGIN
    INSERT INTO search_entries (search_entries, rowid, text)
        VALUES ('delete', old.id, json_extract(old.body, '$.text'));
END;

-- Replay upserts bodies (ON CONFLICT DO UPDATE SET body = ...): re-index when the body changed.
CREATE TRIGGER search_entries_update AFTER UPDATE OF body ON timeline_entries
WHEN old.body IS NOT new.body
BEGIN
    INSERT INTO search_entries (search_entries, rowid, text)
        SELECT 'delete', old.id, json_extract(old.body, '$.text')
        WHERE CASE WHEN json_valid(old.body) THEN json_type(old.body, '$.text') END = 'text';
    INSERT INTO search_entries (rowid, text)
        SELECT new.id, json_extract(new.body, '$.text')
        WHERE CASE WHEN json_valid(new.body) THEN json_type(new.body, '$.text') END = 'text';
END;

INSERT INTO search_entries (search_entries) VALUES ('rebuild');

-- Identity values (emails, phones, platform ids): external content on identities itself.
CREATE VIRTUAL TABLE search_identities USING fts5(
    value,
    content = 'identities',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER search_identities_insert AFTER INSERT ON identities
BEGIN
    INSERT INTO search_identities (rowid, value) VALUES (new.id, new.value);
END;

CREATE TRIGGER search_identities_delete AFTER DELETE ON identities
BEGIN
    INSERT INTO search_identities (search_identities, rowid, value)
        VALUES ('delete', old.id, old.value);
END;

CREATE TRIGGER search_identities_update AFTER UPDATE OF value ON identities
WHEN old.value IS NOT new.value
BEGIN
    INSERT INTO search_identities (search_identities, rowid, value)
        VALUES ('delete', old.id, old.value);
    INSERT INTO search_identities (rowid, value) VALUES (new.id, new.value);
END;

INSERT INTO search_identities (search_identities) VALUES ('rebuild');

-- Customer names. customers has a TEXT key and no stable integer rowid (VACUUM may renumber
-- it), so this table keeps its own copy of the name with the customer id beside it. Renaming
-- a named customer (which the pipeline never does: it only fills a missing name) deletes by
-- the unindexed customer_id, a scan of this table.
CREATE VIRTUAL TABLE search_names USING fts5(
    name,
    customer_id UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER search_names_insert AFTER INSERT ON customers
WHEN new.display_name IS NOT NULL
BEGIN
    INSERT INTO search_names (name, customer_id) VALUES (new.display_name, new.id);
END;

CREATE TRIGGER search_names_set AFTER UPDATE OF display_name ON customers
WHEN old.display_name IS NULL AND new.display_name IS NOT NULL
BEGIN
    INSERT INTO search_names (name, customer_id) VALUES (new.display_name, new.id);
END;

CREATE TRIGGER search_names_change AFTER UPDATE OF display_name ON customers
WHEN old.display_name IS NOT NULL AND old.display_name IS NOT new.display_name
BEGIN
    DELETE FROM search_names WHERE customer_id = old.id;
    INSERT INTO search_names (name, customer_id)
        SELECT new.display_name, new.id WHERE new.display_name IS NOT NULL;
END;

CREATE TRIGGER search_names_delete AFTER DELETE ON customers
WHEN old.display_name IS NOT NULL
BEGIN
    DELETE FROM search_names WHERE customer_id = old.id;
END;

INSERT INTO search_names (name, customer_id)
    SELECT display_name, id FROM customers WHERE display_name IS NOT NULL;
