-- Every stored raw event gets its normalise job from the database itself, in the statement
-- that stores it: webhook ingest is then one INSERT (one round trip to SQLite's worker
-- thread, one implicit transaction) instead of BEGIN, two INSERTs and COMMIT. A duplicate
-- (ON CONFLICT DO NOTHING) inserts no row, so it fires nothing and gets no job. The job is
-- ready at once: at the event's received_at, or the database's clock if that is earlier (a
-- caller may store events with a later received_at).
CREATE TRIGGER raw_events_enqueue AFTER INSERT ON raw_events
BEGIN
    INSERT INTO jobs (kind, raw_event_id, state, attempts, run_at, created_at)
    VALUES ('normalize', NEW.id, 'queued', 0,
            MIN(NEW.received_at, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)),
            MIN(NEW.received_at, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)));
END;
