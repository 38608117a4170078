-- Ferry schema, version 106: the C++ writer's WAL-mode checks move into its own statement
-- (ADR 0070, twelfth-session amendment). @SCHEMA@ is replaced by the quoted schema name when the
-- migration runs.
--
-- wal_emit_guard() (0075) made the checks in plpgsql: a function call and a query through SPI in
-- every transaction, the larger part of what one emitted message cost beyond a plain INSERT. The
-- writer's prepared statement now makes the same checks itself (wal_level, a usable registered
-- slot) and calls this function only when one fails, so the producer gets the same SQLSTATE and
-- the same message as from wal_emit_guard(). wal_emit_guard() stays for producers that frame
-- messages in SQL (emit_wal, enqueue_wal) and for statements prepared by an older writer.

CREATE OR REPLACE FUNCTION @SCHEMA@.wal_emit_refuse(reason text)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    IF reason = 'wal_level' THEN
        RAISE EXCEPTION 'ferry: WAL mode needs wal_level = logical (the server runs with %)',
            current_setting('wal_level') USING ERRCODE = '55000';
    END IF;
    RAISE EXCEPTION 'ferry: WAL mode: no usable replication slot is registered for this schema (missing, lost, or none registered); a message emitted now would never be published. Create and register the relay''s slot first (docs/operations.md, WAL mode)'
        USING ERRCODE = '55000';
END
$fn$;
