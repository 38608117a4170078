-- Ferry schema, version 74: one way to put a known message back on its way, in either mode
-- (ADR 0070). @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- Re-drives (an expired message by an operator, a message reconciliation found lost) used to
-- insert into the outbox table. A WAL-mode relay never reads that table, so in WAL mode (a slot
-- is registered for this schema) requeue() emits the message with emit_wal instead, in the
-- caller's transaction. Returns true when the message was queued; false when it is already
-- waiting in the outbox table (polling mode: the unique message_id), so a re-drive is never
-- queued twice there. In WAL mode a repeat emits again; consumers' dedup absorbs the copy.

CREATE FUNCTION @SCHEMA@.requeue(message_id uuid, topic text, key text, payload bytea,
                                 headers jsonb, created_at timestamptz)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    IF EXISTS (SELECT 1 FROM @SCHEMA@.wal_slot) THEN
        PERFORM @SCHEMA@.emit_wal(requeue.message_id, requeue.topic, requeue.key,
                                  requeue.payload, requeue.headers, requeue.created_at, NULL);
        RETURN true;
    END IF;
    INSERT INTO @SCHEMA@.outbox AS o (message_id, topic, key, payload, headers, created_at,
                                      available_at, expires_at)
    VALUES (requeue.message_id, requeue.topic, requeue.key, requeue.payload, requeue.headers,
            requeue.created_at, clock_timestamp(), NULL)
    ON CONFLICT (message_id) DO NOTHING;
    RETURN FOUND;
END
$fn$;
