-- Ferry schema, version 105: does the current snapshot see these transactions? (ADR 0070,
-- amendment "A transaction in the stream before it is visible"). @SCHEMA@ is replaced by the
-- quoted schema name when the migration runs.
--
-- A transaction's commit record can reach the replication stream a moment before the
-- transaction is visible to new snapshots: PostgreSQL flushes the record, then ends the
-- transaction in shared memory. A WAL-mode relay that looks up the database about a message it
-- just received (are there parked messages of its key?) must not do so in that moment, or it
-- sees rows the message's own transaction already deleted (retry_parked deletes a key's parked
-- rows and re-emits them in one transaction). The relay asks this function, in the same
-- statement as its lookup (a STABLE function shares the statement's snapshot), and waits when
-- it says false.
--
-- `xids` are the 32-bit transaction ids pgoutput sends; each is widened to a full xid8 against
-- the snapshot's xmax. An id at or after xmax (not started when the snapshot was taken, or in
-- its future) is not visible; otherwise pg_visible_in_snapshot decides. An empty array: true.
CREATE FUNCTION @SCHEMA@.wal_xids_visible(xids bigint[]) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT coalesce(bool_and(CASE WHEN d.back = 0 OR d.back > 2147483648 THEN false
                                  ELSE pg_visible_in_snapshot((m.xmax - d.back)::text::xid8,
                                                              snap.s) END), true)
      FROM (SELECT pg_current_snapshot() AS s) AS snap,
           LATERAL (SELECT pg_snapshot_xmax(snap.s)::text::numeric AS xmax) AS m,
           LATERAL (SELECT ((m.xmax % 4294967296) - x + 4294967296) % 4294967296 AS back
                      FROM unnest(xids) AS x) AS d
$fn$;
