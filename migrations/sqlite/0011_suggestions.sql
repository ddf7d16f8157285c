-- Merge suggestions from weak evidence (names, addresses, birth dates, phone suffixes),
-- scored in the background by the suggester (src/suggest). Nothing here merges by itself.

-- What the scorer compares, per canonical customer, as last computed (JSON).
CREATE TABLE suggest_features (
    customer_id TEXT PRIMARY KEY,
    features TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Blocking keys: a customer is only compared with customers that share one.
CREATE TABLE suggest_blocks (
    block_key TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    PRIMARY KEY (block_key, customer_id)
);
CREATE INDEX suggest_blocks_customer ON suggest_blocks (customer_id);

-- Customers whose weak attributes may have changed since the suggester last looked.
CREATE TABLE suggest_dirty (
    customer_id TEXT PRIMARY KEY,
    since INTEGER NOT NULL
);

-- One row per pair (customer_a < customer_b), whatever happens to it.
CREATE TABLE merge_suggestions (
    id TEXT PRIMARY KEY,
    customer_a TEXT NOT NULL,
    customer_b TEXT NOT NULL,
    -- log2 likelihood ratio × 1000 (an integer, so keyset cursors are exact)
    score_milli INTEGER NOT NULL,
    reasons TEXT NOT NULL,
    -- open | accepted | rejected | closed (the two became one customer by other means)
    status TEXT NOT NULL DEFAULT 'open',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    merge_id TEXT,
    UNIQUE (customer_a, customer_b)
);
CREATE INDEX merge_suggestions_status ON merge_suggestions (status, score_milli, id);
CREATE INDEX merge_suggestions_b ON merge_suggestions (customer_b);

-- Pairs an agent said are different people (a rejected suggestion, an unmerge): never
-- suggested again.
CREATE TABLE do_not_merge (
    customer_a TEXT NOT NULL,
    customer_b TEXT NOT NULL,
    source TEXT NOT NULL,
    ref_id TEXT,
    actor TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (customer_a, customer_b)
);
