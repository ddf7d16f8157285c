-- Identity graph: provenance of the last sighting, values recorded without linking
-- (blocked, over-shared, over the cap), and reversible merges with their audit trail.
ALTER TABLE identities ADD COLUMN match_key TEXT NOT NULL DEFAULT '';
UPDATE identities SET match_key = ident_key;
-- 1: the value links events to this customer; 0: recorded only (see guard).
ALTER TABLE identities ADD COLUMN links INTEGER NOT NULL DEFAULT 1;
ALTER TABLE identities ADD COLUMN guard TEXT;
ALTER TABLE identities ADD COLUMN last_connector_id TEXT;
ALTER TABLE identities ADD COLUMN last_raw_event_id INTEGER;
UPDATE identities SET last_connector_id = connector_id, last_raw_event_id = raw_event_id;
CREATE INDEX identities_match ON identities (match_key);

-- The customer records a merge moved (the merged one and its own aliases), so an unmerge
-- puts back exactly those.
ALTER TABLE customer_merges ADD COLUMN moved_ids TEXT NOT NULL DEFAULT '[]';
UPDATE customer_merges SET moved_ids = '["' || merged_id || '"]';
ALTER TABLE customer_merges ADD COLUMN undone_at INTEGER;
ALTER TABLE customer_merges ADD COLUMN undone_by TEXT;
ALTER TABLE customer_merges ADD COLUMN undo_reason TEXT;
