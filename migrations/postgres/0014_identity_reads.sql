-- The owner lookup of identity resolution (match_key → ident_key, customer_id, id) reads
-- the index alone (an index-only scan once the visibility map is set). Replaces the
-- narrower index of 0010_identity.sql.
DROP INDEX identities_match;
CREATE INDEX identities_match ON identities (match_key) INCLUDE (ident_key, customer_id, id);

-- No query reads identities by (kind, value) (the API finds a customer by ident_key, text
-- search goes through identities_search); each new identity paid for it.
DROP INDEX identities_kind_value;
