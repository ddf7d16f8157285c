-- Poll leases: with several nodes on one database, exactly one node polls a connector at a
-- time. The owner renews well before `expires_at`; when it dies, another node takes the lease
-- once it has expired. `fence` grows by one at every change of owner: the cursor write of a
-- polled page checks it in the same transaction, so a node that lost its lease while paused
-- cannot commit a stale page over its successor's.
CREATE TABLE poll_leases (
    name        TEXT   PRIMARY KEY,
    owner       TEXT   NOT NULL,
    fence       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    renewed_at  INTEGER NOT NULL
);

-- (PostgreSQL also gets a NOTIFY trigger on `events` here, for live events across nodes;
-- SQLite is single-node, so its SSE streams need no cross-node wake-up.)
