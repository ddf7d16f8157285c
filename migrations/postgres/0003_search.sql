-- Full-text search (PostgreSQL) over message/note text, customer names and identity values,
-- for `GET /api/v1/search`. GIN indexes on tsvectors that PostgreSQL itself keeps current on
-- every insert and update (replay's ON CONFLICT DO UPDATE SET body = ... included), so no
-- trigger or application code maintains them; building them indexes the existing history.
--
-- Text search configuration: 'simple' (lower-case, no stemming, no stop words). The channels
-- carry every language; 'english' would stem Spanish or German words wrongly and drop
-- English stop words that matter in short chat messages ("not", "no"). It also matches the
-- SQLite side (FTS5 unicode61, no stemming), so both backends find the same words.

-- Message and note text: a stored generated column, so ranking reads the tsvector instead of
-- re-parsing the JSON body of every matching row. Bodies are JSON written by the pipeline.
ALTER TABLE timeline_entries ADD COLUMN search_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', coalesce((body::jsonb) ->> 'text', ''))) STORED;
CREATE INDEX timeline_search ON timeline_entries USING GIN (search_tsv);

-- Customer names (short: an expression index, recomputed only for matching rows).
CREATE INDEX customers_search ON customers
    USING GIN (to_tsvector('simple', coalesce(display_name, '')));

-- Identity values. The parser keeps an email as one token; the second vector splits it at '@'
-- so the local part and the domain are found too (`ada`, `example.com`).
CREATE INDEX identities_search ON identities
    USING GIN ((to_tsvector('simple', value) || to_tsvector('simple', translate(value, '@', ' '))));
