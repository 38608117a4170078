#!/usr/bin/env bash
# Probe for ADR 0080 (not a test of Ferry's code, and not a bench): does reading an insert-only
# table in batches between snapshots take every committed row exactly once, under concurrent
# producers with short, long and rolled-back transactions? And is per-key order kept when each
# batch goes out in id order? Producers serialize on a key (a row lock on `agg`) after their
# transaction already has its txid, so a transaction that committed later can have the lower
# txid. Three negative controls run in the same loop: the batches without the transactions in
# progress at the previous snapshot, and a cursor on `id > last_id` (the one DESIGN.md warns
# about), should lose rows; the same batches sent in txid order (what cutting a batch by txid
# would do) should break per-key order.
#
# Usage: bench/probes/snapshot_batches_check.sh DSN [SECONDS]   (default 20)
# Needs pgbench and psql (PostgreSQL 15 client). Creates and drops the schema ferry_snapcheck.
# Exit status 1 when a row is missing from the snapshot batches, taken twice, or out of its key's
# order.
set -euo pipefail
dsn="${1:?usage: $0 DSN [SECONDS]}"
seconds="${2:-20}"
pgbench="$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
q() { psql -X -q -v ON_ERROR_STOP=1 "${dsn}" "$@"; }

q <<'SQL'
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS ferry_snapcheck CASCADE;
CREATE SCHEMA ferry_snapcheck;
CREATE TABLE ferry_snapcheck.ev (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    k int,      -- the key, on the row a transaction writes after taking the key's lock
    seq int);   -- the key's sequence number: its commit order
CREATE INDEX ON ferry_snapcheck.ev (txid, id);
CREATE TABLE ferry_snapcheck.agg (k int PRIMARY KEY, seq int NOT NULL);
INSERT INTO ferry_snapcheck.agg SELECT g, 0 FROM generate_series(1, 10) g;
-- What each reader took, in the order it would publish (pos): the snapshot reader (batch
-- number) and the id cursor.
CREATE TABLE ferry_snapcheck.taken (pos bigserial, reader text, batch int, id bigint,
                                    read_ms float8);
CREATE TABLE ferry_snapcheck.control (stop boolean NOT NULL);
INSERT INTO ferry_snapcheck.control VALUES (false);

CREATE PROCEDURE ferry_snapcheck.read_loop() LANGUAGE plpgsql AS $$
DECLARE
    s_prev pg_snapshot := pg_current_snapshot();
    s_next pg_snapshot;
    last_id bigint := 0;
    b int := 0;
    t0 timestamptz;
    n bigint;
    stopping boolean := false;
    drained int := 0;
BEGIN
    COMMIT;
    LOOP
        SELECT stop INTO stopping FROM ferry_snapcheck.control;
        s_next := pg_current_snapshot();
        COMMIT;  -- the read below runs under a later snapshot, which sees all of s_next
        b := b + 1;
        t0 := clock_timestamp();
        INSERT INTO ferry_snapcheck.taken (reader, batch, id)
            SELECT 'snapshot', b, e.id FROM ferry_snapcheck.ev e
            WHERE e.txid IN (SELECT x FROM pg_snapshot_xip(s_prev) AS x
                             UNION ALL
                             SELECT e2.txid FROM ferry_snapcheck.ev e2
                             WHERE e2.txid >= pg_snapshot_xmax(s_prev)
                               AND e2.txid < pg_snapshot_xmax(s_next))
              AND pg_visible_in_snapshot(e.txid, s_next)
              AND NOT pg_visible_in_snapshot(e.txid, s_prev)
            ORDER BY e.id;
        GET DIAGNOSTICS n = ROW_COUNT;
        UPDATE ferry_snapcheck.taken SET read_ms = extract(epoch FROM clock_timestamp() - t0) * 1000
            WHERE reader = 'snapshot' AND batch = b;
        -- Negative control: the same batch in txid order.
        INSERT INTO ferry_snapcheck.taken (reader, batch, id)
            SELECT 'snapshot_txid_order', b, e.id FROM ferry_snapcheck.ev e
            WHERE e.id IN (SELECT id FROM ferry_snapcheck.taken WHERE reader = 'snapshot'
                                                                  AND batch = b)
            ORDER BY e.txid, e.id;
        -- Negative control: the same batches without the transactions that were in progress
        -- at s_prev (only the txid range). It loses the rows of every transaction that was
        -- still open when the previous snapshot was taken.
        INSERT INTO ferry_snapcheck.taken (reader, batch, id)
            SELECT 'snapshot_without_xip', b, e.id FROM ferry_snapcheck.ev e
            WHERE e.txid >= pg_snapshot_xmax(s_prev) AND e.txid < pg_snapshot_xmax(s_next)
              AND pg_visible_in_snapshot(e.txid, s_next)
              AND NOT pg_visible_in_snapshot(e.txid, s_prev);
        s_prev := s_next;
        -- The cursor a naive relay keeps: every visible row above the last id it saw.
        INSERT INTO ferry_snapcheck.taken (reader, batch, id)
            SELECT 'cursor', b, id FROM ferry_snapcheck.ev WHERE id > last_id;
        SELECT coalesce(max(id), last_id) INTO last_id FROM ferry_snapcheck.taken
            WHERE reader = 'cursor';
        COMMIT;
        -- After the producers stopped: two more rounds, so every committed row is visible.
        IF stopping THEN
            drained := drained + 1;
            EXIT WHEN drained > 2;
        END IF;
        PERFORM pg_sleep(0.005);
    END LOOP;
END $$;
SQL

# Producers: 1-5 rows a transaction, which take its txid; then up to 2 ms later the key's lock
# and one row with the key's next sequence number. One transaction in 40 stays open for
# 0.5-1.5 s, one in 10 rolls back (its rows must never be taken).
cat >"${work}/produce.sql" <<'EOF2'
\set rows random(1, 5)
\set long random(1, 40)
\set abort random(1, 10)
\set k random(1, 10)
BEGIN;
INSERT INTO ferry_snapcheck.ev (k) SELECT NULL FROM generate_series(1, :rows);
SELECT pg_sleep(random() * 0.002);
UPDATE ferry_snapcheck.agg SET seq = seq + 1 WHERE k = :k;
INSERT INTO ferry_snapcheck.ev (k, seq) SELECT k, seq FROM ferry_snapcheck.agg WHERE k = :k;
\if :long = 1
SELECT pg_sleep(0.5 + random());
\endif
\if :abort = 1
ROLLBACK;
\else
COMMIT;
\endif
EOF2

q -c "CALL ferry_snapcheck.read_loop()" &
reader=$!
"${pgbench}" -n -c 6 -j 2 -T "${seconds}" -f "${work}/produce.sql" "${dsn}" >"${work}/pgbench.log" 2>&1 ||
    { cat "${work}/pgbench.log" >&2; exit 2; }
q -c "UPDATE ferry_snapcheck.control SET stop = true"
wait "${reader}"

q -A -F ' ' -t <<'SQL' | tee "${work}/result"
SELECT 'committed_rows', count(*) FROM ferry_snapcheck.ev;
SELECT 'snapshot_batches', count(DISTINCT batch) FROM ferry_snapcheck.taken WHERE reader = 'snapshot';
SELECT 'snapshot_missing', count(*) FROM ferry_snapcheck.ev e WHERE NOT EXISTS (
    SELECT 1 FROM ferry_snapcheck.taken t WHERE t.reader = 'snapshot' AND t.id = e.id);
SELECT 'snapshot_taken_twice', count(*) FROM (SELECT id FROM ferry_snapcheck.taken
    WHERE reader = 'snapshot' GROUP BY id HAVING count(*) > 1) d;
SELECT 'snapshot_not_committed', count(*) FROM ferry_snapcheck.taken t WHERE t.reader = 'snapshot'
    AND NOT EXISTS (SELECT 1 FROM ferry_snapcheck.ev e WHERE e.id = t.id);
SELECT 'snapshot_without_xip_missing', count(*) FROM ferry_snapcheck.ev e WHERE NOT EXISTS (
    SELECT 1 FROM ferry_snapcheck.taken t WHERE t.reader = 'snapshot_without_xip' AND t.id = e.id);
SELECT 'snapshot_order_violations', count(*) FROM (SELECT e.seq, lag(e.seq) OVER (PARTITION BY e.k
    ORDER BY t.pos) AS prev FROM ferry_snapcheck.taken t JOIN ferry_snapcheck.ev e USING (id)
    WHERE t.reader = 'snapshot' AND e.k IS NOT NULL) o WHERE o.prev >= o.seq;
SELECT 'txid_order_violations', count(*) FROM (SELECT e.seq, lag(e.seq) OVER (PARTITION BY e.k
    ORDER BY t.pos) AS prev FROM ferry_snapcheck.taken t JOIN ferry_snapcheck.ev e USING (id)
    WHERE t.reader = 'snapshot_txid_order' AND e.k IS NOT NULL) o WHERE o.prev >= o.seq;
SELECT 'keyed_rows', count(*) FROM ferry_snapcheck.ev WHERE k IS NOT NULL;
SELECT 'cursor_missing', count(*) FROM ferry_snapcheck.ev e WHERE NOT EXISTS (
    SELECT 1 FROM ferry_snapcheck.taken t WHERE t.reader = 'cursor' AND t.id = e.id);
SELECT 'snapshot_read_ms_p50_p99', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY read_ms)::numeric, 3),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY read_ms)::numeric, 3)
    FROM (SELECT DISTINCT batch, read_ms FROM ferry_snapcheck.taken WHERE reader = 'snapshot') s;
SQL
q -c "SET client_min_messages = warning" -c "DROP SCHEMA ferry_snapcheck CASCADE"
awk '$1 == "snapshot_missing" || $1 == "snapshot_taken_twice" || $1 == "snapshot_not_committed" ||
     $1 == "snapshot_order_violations" { bad += $2 }
     END { exit bad > 0 }' "${work}/result"
