-- Ferry schema, version 75: a guard for producers that frame WAL messages themselves (ADR 0070,
-- "emit cost"). @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- emit_wal (0070, 0071) builds each frame in SQL: per message an extract() in numeric, four
-- convert_to() and a jsonb-to-text rendering, inside a plpgsql call. Measured server CPU per
-- 1000 messages of 200 B: 21 ms, against 8.3 ms for a plain INSERT of the same rows and 4 ms
-- for pg_logical_emit_message of ready frames. The C++ writer now sends each frame's variable
-- part (schema, topic, key, headers, payload, length-prefixed) and calls this guard once per
-- statement: it makes emit_wal's checks (wal_level, a usable registered slot, once per
-- transaction) and returns the database clock in microseconds since the Unix epoch, which the
-- statement writes into every frame's created_at (and expires_at) as emit_wal did.

CREATE OR REPLACE FUNCTION @SCHEMA@.wal_emit_guard()
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    IF current_setting('wal_level') <> 'logical' THEN
        RAISE EXCEPTION 'ferry: WAL mode needs wal_level = logical (the server runs with %)',
            current_setting('wal_level') USING ERRCODE = '55000';
    END IF;
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
    RETURN (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
END
$fn$;
