-- Ferry schema, version 72: retrying a parked message in WAL mode (ADR 0070). @SCHEMA@ is
-- replaced by the quoted schema name when the migration runs.
--
-- In polling mode a parked message goes back into the outbox with its original id, ahead of the
-- later rows of its key, which waited in the outbox. In WAL mode there is no table to wait in:
-- the relay parks a parked key's later messages too (error_code KEY_PARKED), in order, and a
-- WAL-mode relay never reads the outbox table. So when a slot is registered for this schema
-- (WAL mode), retry_parked re-emits the message and every later parked message of its key, in
-- id (= commit) order, with their original ids, as logical messages in the caller's
-- transaction, and deletes them from `parked` in the same transaction: the relay sees the key
-- free and the messages in order, or (on rollback) nothing changed. Without a registered slot
-- it behaves as before.

CREATE OR REPLACE FUNCTION @SCHEMA@.retry_parked(parked_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    retried boolean;
    first_row @SCHEMA@.parked%ROWTYPE;
    r @SCHEMA@.parked%ROWTYPE;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @SCHEMA@.wal_slot) THEN
        WITH moved AS (DELETE FROM @SCHEMA@.parked WHERE id = parked_id RETURNING *),
        restored AS (
            INSERT INTO @SCHEMA@.outbox (id, message_id, topic, key, payload, headers,
                                         created_at, available_at, expires_at)
            OVERRIDING SYSTEM VALUE
            SELECT id, message_id, topic, key, payload, headers, created_at,
                   clock_timestamp(), expires_at FROM moved
            RETURNING 1)
        SELECT count(*) > 0 INTO retried FROM restored;
        RETURN retried;
    END IF;
    SELECT * INTO first_row FROM @SCHEMA@.parked WHERE id = parked_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    FOR r IN SELECT * FROM @SCHEMA@.parked
             WHERE topic = first_row.topic AND key = first_row.key AND id >= parked_id
             ORDER BY id FOR UPDATE
    LOOP
        IF r.topic = '' THEN
            -- A logical message that never decoded (WAL_MESSAGE_INVALID) has no message to emit.
            RAISE EXCEPTION 'ferry: parked row % is an undecodable WAL message (%); it cannot be '
                'retried, only discarded', r.id, r.reason USING ERRCODE = '22023';
        END IF;
        PERFORM @SCHEMA@.emit_wal(r.message_id, r.topic, r.key, r.payload, r.headers,
                                  r.created_at, r.expires_at);
        DELETE FROM @SCHEMA@.parked WHERE id = r.id;
    END LOOP;
    RETURN true;
END
$fn$;
