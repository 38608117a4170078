-- Probe (not a bench: it writes no JSON and runs no relay): the database's own work per 1000
-- messages for three ways of taking a batch out of an outbox, measured inside the server so
-- that no client formatting or network time is counted. Used by ADR 0080.
--
--   b1        B1's statement: DELETE ... WHERE id IN (SELECT ... ORDER BY id LIMIT 1000 FOR
--             UPDATE SKIP LOCKED) RETURNING the message columns.
--   ferry     today's polling mark after its claim: read the batch by id (the claim), then one
--             statement that deletes the rows by address and writes the batch's ledger row with
--             the payloads (relay/src/marker.cpp, migration 0090).
--   snapshot  an insert-only outbox read by snapshot: the rows whose transaction became
--             visible between two snapshots (an index on (txid, id)), then a ledger row that
--             points at them (ids and offsets, no payload copy). Nothing is deleted.
--
-- Run: psql -X -q -v rounds=20 -f bench/probes/no_delete_claim.sql "$DSN"
-- It creates and drops the schema ferry_probe. Rows: 200 B payloads, 50 keys, like bench_relay.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
\if :{?rounds}
\else
\set rounds 20
\endif
DROP SCHEMA IF EXISTS ferry_probe CASCADE;
CREATE SCHEMA ferry_probe;
SET search_path = ferry_probe;
SET synchronous_commit = off;

CREATE TABLE q_b1 (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, message_id uuid NOT NULL,
    topic text NOT NULL, key text NOT NULL, payload bytea NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE q_ferry (LIKE q_b1 INCLUDING ALL);
CREATE TABLE q_snap (LIKE q_b1 INCLUDING ALL, txid xid8 NOT NULL DEFAULT pg_current_xact_id());
CREATE INDEX q_snap_txid_idx ON q_snap (txid, id);
CREATE TABLE ledger_copy (batch_id bigserial, message_ids uuid[], topics text[], keys text[],
    partitions int[], offsets bigint[], created_ats timestamptz[], payload_lens int[],
    payloads bytea, headers jsonb[], published_at timestamptz DEFAULT now());
ALTER TABLE ledger_copy ALTER payloads SET STORAGE EXTERNAL, ALTER message_ids SET STORAGE EXTERNAL,
    ALTER topics SET STORAGE EXTERNAL, ALTER keys SET STORAGE EXTERNAL, ALTER headers SET STORAGE EXTERNAL;
CREATE TABLE ledger_pointer (batch_id bigserial, first_id bigint, ids bigint[], partitions int[],
    offsets bigint[], published_at timestamptz DEFAULT now());

-- The same rows in each table; q_snap's come in transactions of 50 rows (distinct txids).
CREATE PROCEDURE fill(n int) LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO q_b1 (message_id, topic, key, payload)
        SELECT gen_random_uuid(), 'orders', 'key-' || (g % 50),
               convert_to(repeat(chr(97 + g % 26), 200), 'UTF8') FROM generate_series(1, n) g;
    INSERT INTO q_ferry (message_id, topic, key, payload)
        SELECT message_id, topic, key, payload FROM q_b1;
    COMMIT;
    FOR t IN 1 .. n / 50 LOOP
        INSERT INTO q_snap (message_id, topic, key, payload)
            SELECT gen_random_uuid(), 'orders', 'key-' || (g % 50),
                   convert_to(repeat(chr(97 + g % 26), 200), 'UTF8') FROM generate_series(1, 50) g;
        COMMIT;
    END LOOP;
END $$;
SELECT (:rounds + 2) * 1000 AS n \gset
CALL fill(:n);
VACUUM ANALYZE q_b1;
VACUUM ANALYZE q_ferry;
VACUUM ANALYZE q_snap;

CREATE TABLE timings (mode text, round int, ms float8);
CREATE PROCEDURE measure(rounds int) LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz; n bigint; b bigint; last_id bigint := 0;
    ids bigint[]; tids tid[]; s_prev pg_snapshot; s_next pg_snapshot; txids xid8[];
BEGIN
    -- Snapshot boundaries: every 20 transactions of 50 rows (1000 rows) of q_snap.
    SELECT array_agg(DISTINCT txid ORDER BY txid) INTO txids FROM q_snap;
    FOR r IN 1 .. rounds LOOP
        -- b1
        t0 := clock_timestamp();
        WITH d AS (DELETE FROM q_b1 WHERE id IN (SELECT id FROM q_b1 ORDER BY id LIMIT 1000
                   FOR UPDATE SKIP LOCKED) RETURNING message_id, topic, key, payload)
            SELECT count(*), sum(octet_length(payload)) INTO n, b FROM d;
        COMMIT;
        INSERT INTO timings VALUES ('b1', r, extract(epoch FROM clock_timestamp() - t0) * 1000);
        -- ferry: the claim's read, then the mark (delete by address + ledger row with payloads)
        t0 := clock_timestamp();
        SELECT array_agg(id ORDER BY id), array_agg(ctid ORDER BY id), sum(octet_length(payload))
            INTO ids, tids, b FROM (SELECT id, ctid, payload FROM q_ferry WHERE id > last_id
                                    ORDER BY id LIMIT 1000) c;
        last_id := ids[1000];
        WITH info AS (SELECT * FROM unnest(ids, tids) AS t(id, tid)),
             moved AS (DELETE FROM q_ferry o USING info WHERE o.ctid = info.tid AND o.id = info.id
                       RETURNING o.*)
        INSERT INTO ledger_copy (message_ids, topics, keys, partitions, offsets, created_ats,
                                 payload_lens, payloads, headers)
            SELECT array_agg(message_id), array_agg(topic), array_agg(key), array_agg(0),
                   array_agg(id), array_agg(created_at), array_agg(octet_length(payload)),
                   string_agg(payload, ''::bytea), array_agg(headers) FROM moved;
        COMMIT;
        INSERT INTO timings VALUES ('ferry', r, extract(epoch FROM clock_timestamp() - t0) * 1000);
        -- snapshot: rows of the 20 transactions between two snapshots, and a pointer ledger row
        s_prev := format('%s:%s:', txids[(r - 1) * 20 + 1], txids[(r - 1) * 20 + 1])::pg_snapshot;
        s_next := format('%s:%s:', txids[r * 20 + 1], txids[r * 20 + 1])::pg_snapshot;
        t0 := clock_timestamp();
        SELECT array_agg(id ORDER BY txid, id), sum(octet_length(payload)) INTO ids, b
            FROM (SELECT id, txid, payload FROM q_snap
                  WHERE txid >= pg_snapshot_xmin(s_prev) AND txid < pg_snapshot_xmax(s_next)
                    AND NOT pg_visible_in_snapshot(txid, s_prev)
                    AND pg_visible_in_snapshot(txid, s_next)
                  ORDER BY txid, id) c;
        INSERT INTO ledger_pointer (first_id, ids, partitions, offsets)
            VALUES (ids[1], ids, array_fill(0, ARRAY[cardinality(ids)]), ids);
        COMMIT;
        INSERT INTO timings VALUES ('snapshot', r, extract(epoch FROM clock_timestamp() - t0) * 1000);
        IF cardinality(ids) <> 1000 THEN
            RAISE EXCEPTION 'snapshot batch % read % rows, not 1000', r, cardinality(ids);
        END IF;
    END LOOP;
END $$;
CALL measure(:rounds);

SELECT mode, count(*) AS rounds,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) AS median_ms_per_1000,
       round(min(ms)::numeric, 2) AS min_ms, round(max(ms)::numeric, 2) AS max_ms
FROM timings WHERE round > 2 GROUP BY mode ORDER BY mode;
SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE mode = 'b1') /
              percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE mode = 'snapshot'))::numeric, 2)
           AS b1_over_snapshot,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE mode = 'ferry') /
              percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE mode = 'snapshot'))::numeric, 2)
           AS ferry_over_snapshot
FROM timings WHERE round > 2;
RESET search_path;
DROP SCHEMA ferry_probe CASCADE;
