-- Poll leases: with several nodes on one database, exactly one node polls a connector at a
-- time. The owner renews well before `expires_at`; when it dies, another node takes the lease
-- once it has expired. `fence` grows by one at every change of owner: the cursor write of a
-- polled page checks it in the same transaction, so a node that lost its lease while paused
-- cannot commit a stale page over its successor's.
CREATE TABLE poll_leases (
    name        TEXT   PRIMARY KEY,
    owner       TEXT   NOT NULL,
    fence       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    renewed_at  BIGINT NOT NULL
);

-- Live events across nodes: every statement that appends to the event log notifies
-- `switchboard_events` (delivered at commit, one notification per transaction since equal
-- payloads are folded). Each node LISTENs on one connection and wakes its SSE streams.
CREATE FUNCTION switchboard_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchboard_events', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION switchboard_events_notify();
