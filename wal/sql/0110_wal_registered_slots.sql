-- Ferry schema, version 110: the C++ writer's WAL-mode slot check reads no table (ADR 0070,
-- twenty-second-session amendment). @SCHEMA@ is replaced by the quoted schema name when the
-- migration runs.
--
-- Since 0106 the writer's statement checks, in every transaction, that a registered slot is
-- usable: it joined the registry (wal_slot) to pg_replication_slots, a view that joins
-- pg_database. Each first access to a relation in a transaction costs the server about as much
-- as the emit's other work, so that check made one emitted message dearer than a plain INSERT.
-- The registry now also lives in two SQL functions whose bodies are constants:
-- wal_registered_slots() (the registered names) and wal_database_oid() (this database). The
-- planner inlines them into the writer's prepared statement, which then reads only
-- pg_get_replication_slots(), the function behind the view: still in every transaction, and
-- still the same predicate (a registered slot of this database, pgoutput, not lost).
--
-- A statement-level trigger rewrites both functions whenever wal_slot changes, in the same
-- transaction. Replacing a function invalidates the cached plans that inlined it, so every
-- session's next statement sees the new registry. An advisory lock orders concurrent
-- registrations, so the last one to rewrite the functions sees every committed row. A body that
-- is out of date can only name a slot that pg_get_replication_slots() then vouches for, or
-- miss one and refuse: it never lets a message be emitted that no usable slot would decode.
-- The registry table stays the source of truth, and emit_wal() and wal_emit_guard() still read
-- it.

CREATE OR REPLACE FUNCTION @SCHEMA@.wal_slot_refresh() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    names text[];
    db oid;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ferry.wal_slot_refresh'), hashtext('@SCHEMA@'));
    SELECT coalesce(array_agg(slot_name ORDER BY slot_name), '{}') INTO names
      FROM @SCHEMA@.wal_slot;
    SELECT oid INTO db FROM pg_database WHERE datname = current_database();
    EXECUTE format('CREATE OR REPLACE FUNCTION @SCHEMA@.wal_registered_slots() RETURNS text[] '
                   'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                   format('SELECT %L::text[]', names));
    EXECUTE format('CREATE OR REPLACE FUNCTION @SCHEMA@.wal_database_oid() RETURNS oid '
                   'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                   format('SELECT %s::oid', db));
    RETURN NULL;
END
$fn$;

CREATE TRIGGER wal_slot_refresh
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @SCHEMA@.wal_slot
    FOR EACH STATEMENT EXECUTE FUNCTION @SCHEMA@.wal_slot_refresh();

-- Write both functions from the rows registered before this migration (a statement trigger
-- fires for a statement that changes no row).
UPDATE @SCHEMA@.wal_slot SET slot_name = slot_name WHERE false;

COMMENT ON FUNCTION @SCHEMA@.wal_slot_refresh() IS
    'Rewrites wal_registered_slots() and wal_database_oid() from wal_slot (migration 0110).';
