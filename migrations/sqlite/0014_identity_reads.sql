-- Identity resolution reads every customer by its TEXT id (twice per identifier and per
-- conversation: the record, then its canonical customer). As a rowid table that is two
-- B-tree searches each (the id index, then the row); WITHOUT ROWID makes it one. Nothing
-- refers to a customer's rowid (search_names keeps the id itself).
--
-- The rebuild drops the old table, which identities references; the reference holds again
-- once the new table has the old name, before this transaction commits.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE customers_rebuilt (
    id           TEXT    PRIMARY KEY,
    canonical_id TEXT    NOT NULL,
    display_name TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO customers_rebuilt (id, canonical_id, display_name, created_at, updated_at)
    SELECT id, canonical_id, display_name, created_at, updated_at FROM customers;
DROP TABLE customers;
ALTER TABLE customers_rebuilt RENAME TO customers;
CREATE INDEX customers_canonical ON customers (canonical_id);

-- The triggers that keep search_names in step went with the old table (0003_search.sql).
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

-- The owner lookup (match_key → ident_key, customer_id, and the row id to update) reads
-- the index alone. It replaces the narrower index of 0010_identity.sql.
DROP INDEX identities_match;
CREATE INDEX identities_match ON identities (match_key, ident_key, customer_id);

-- The pipeline (src/store/apply.rs), the only writer of new identities, adds their values to
-- search_identities itself, in one statement after the batch's inserts. As a row trigger the
-- same insert cost ~50 µs per identity: every statement that fires it opens a savepoint, and
-- FTS5 flushes its pending terms to a new segment at each one.
DROP TRIGGER search_identities_insert;

-- The guard counts (linking identities per customer and kind) read the index alone.
DROP INDEX identities_customer;
CREATE INDEX identities_customer ON identities (customer_id, links, kind);

-- No query reads identities by (kind, value) (the API finds a customer by ident_key, text
-- search goes through search_identities); each new identity paid for it.
DROP INDEX identities_kind_value;
