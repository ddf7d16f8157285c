-- Every stored raw event gets its normalise job from the database itself, in the statement
-- that stores it: webhook ingest is then one INSERT (one round trip, one implicit
-- transaction) instead of BEGIN, two INSERTs and COMMIT. A statement-level trigger with a
-- transition table inserts the whole batch's jobs in one INSERT … SELECT; rows skipped by
-- ON CONFLICT DO NOTHING are not in the transition table, so duplicates get no job. The job
-- is ready at once: at the event's received_at, or the database's clock if that is earlier
-- (a caller may store events with a later received_at).
CREATE FUNCTION raw_events_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs (kind, raw_event_id, state, attempts, run_at, created_at)
    SELECT 'normalize', n.id, 'queued', 0,
           LEAST(n.received_at, (extract(epoch FROM clock_timestamp()) * 1000)::bigint),
           LEAST(n.received_at, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
    FROM new_raw_events n ORDER BY n.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER raw_events_enqueue AFTER INSERT ON raw_events
    REFERENCING NEW TABLE AS new_raw_events
    FOR EACH STATEMENT EXECUTE FUNCTION raw_events_enqueue();
