-- Ferry schema, version 71: WAL mode refuses to emit while no slot would decode the message
-- (ADR 0070, rule 9). @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- A logical message is decoded only by slots that existed when it was written, and only until a
-- slot is invalidated. A producer that emits while the relay's slot is missing or lost writes a
-- message no relay will ever publish, and nothing would notice. So the relay's slot is
-- registered here (ferry::wal::register_slot, when the relay or ferryctl creates it), and
-- emit_wal raises instead of emitting when no registered slot exists in this database with a
-- usable wal_status: the producer's transaction fails loudly, nothing is lost silently.
-- Cost: one look at pg_replication_slots and wal_slot per transaction (a transaction-local
-- setting remembers the check), not per message.

CREATE TABLE @SCHEMA@.wal_slot (
    slot_name     text        PRIMARY KEY CHECK (slot_name ~ '^[a-z0-9_]{1,63}$'),
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE @SCHEMA@.wal_slot IS
    'Replication slots the WAL-mode relays of this schema stream from; emit_wal needs one usable.';

CREATE OR REPLACE FUNCTION @SCHEMA@.emit_wal(message_id uuid, topic text, key text,
                                             payload bytea, headers jsonb,
                                             created_at timestamptz, expires_at timestamptz)
RETURNS pg_lsn LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    IF current_setting('wal_level') <> 'logical' THEN
        RAISE EXCEPTION 'ferry: WAL mode needs wal_level = logical (the server runs with %)',
            current_setting('wal_level') USING ERRCODE = '55000';
    END IF;
    -- Once per transaction and schema: the transaction-local setting reverts at commit or
    -- rollback (and with a rolled-back savepoint), so each transaction checks again.
    IF current_setting('ferry.wal_slot_checked_' || btrim('@SCHEMA@', '"'), true)
           IS DISTINCT FROM 'yes' THEN
        IF NOT EXISTS (SELECT 1 FROM @SCHEMA@.wal_slot AS w
                         JOIN pg_replication_slots AS s ON s.slot_name = w.slot_name
                        WHERE s.database = current_database() AND s.plugin = 'pgoutput'
                          AND s.wal_status IS DISTINCT FROM 'lost') THEN
            RAISE EXCEPTION 'ferry: WAL mode: no usable replication slot is registered for this schema (missing, lost, or none registered); a message emitted now would never be published. Create and register the relay''s slot first (docs/operations.md, WAL mode)'
                USING ERRCODE = '55000';
        END IF;
        PERFORM set_config('ferry.wal_slot_checked_' || btrim('@SCHEMA@', '"'), 'yes', true);
    END IF;
    RETURN pg_logical_emit_message(true, 'ferry',
        @SCHEMA@.wal_frame(message_id, topic, key, payload, headers, created_at, expires_at));
END
$fn$;
