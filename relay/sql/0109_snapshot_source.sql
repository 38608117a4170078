-- Ferry schema, version 109: what the snapshot source needs (relay.source: snapshot, ADR 0080).
-- @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- The snapshot source never deletes a row as it publishes it. It reads the outbox between two
-- snapshots of the database: the rows of the transactions visible in the newer snapshot S1 and
-- not in the older S0 (an "epoch"), in id order, cut into batches by id. Each row therefore
-- carries the id of the transaction that inserted it. The column's default takes it; the
-- transaction has one already because it writes. The default is evaluated once for the rows that
-- exist now (pg_current_xact_id is stable), which gives them this migration's transaction: they
-- are all in a snapshot source's first epoch, like every row committed before it starts.
ALTER TABLE @SCHEMA@.outbox ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
COMMENT ON COLUMN @SCHEMA@.outbox.txid IS
    'The inserting transaction (top level): the snapshot source reads rows by it (migration 0109).';
-- An epoch's rows are one range of txids plus the txids that were in progress in S0: one range
-- scan and a few equality probes. (shard, txid, id) would need one probe per shard.
CREATE INDEX outbox_txid_id_idx ON @SCHEMA@.outbox (txid, id);

-- Each lease group's durable position. Every row whose transaction is visible in s0 is finished
-- (published, parked or expired, and recorded). When s1 is set, the epoch (s0, s1] is being
-- published, and its rows with id <= after_id are finished too. Rows finished above that point
-- are published again after a crash (bounded by the rows in flight). `seq` only grows: a mark
-- updates the row only with a higher one, so marks that commit out of order never move it back.
-- `lease_groups` is the writer's group count (group = shard % lease_groups).
CREATE TABLE @SCHEMA@.snapshot_position (
    lease_group  int          PRIMARY KEY CHECK (lease_group >= 0),
    lease_groups int          NOT NULL CHECK (lease_groups BETWEEN 1 AND 256),
    s0           pg_snapshot  NOT NULL,
    s1           pg_snapshot,
    after_id     bigint       NOT NULL DEFAULT 0,
    seq          bigint       NOT NULL DEFAULT 0,
    updated_at   timestamptz  NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE @SCHEMA@.snapshot_position IS
    'relay.source: snapshot: per lease group, what is finished (migration 0109). A row here '
    'means the outbox keeps published rows; a polling relay refuses such a schema.';

-- The snapshot source's ledger: one row per mark that points at the outbox rows it published
-- (ids, partitions, offsets). It copies no message ids, topics, keys or payloads: that copy cost
-- as much as the design saves (ADR 0080, sixteenth-session amendment). The view `ledger` joins
-- the retained outbox rows for them.
CREATE TABLE @SCHEMA@.snapshot_batch (
    batch_id     bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    published_at timestamptz  NOT NULL DEFAULT now(),
    acked_at     timestamptz,
    relay_epoch  bigint       NOT NULL,
    lease_group  int          NOT NULL,
    ids          bigint[]     NOT NULL,
    partitions   int[]        NOT NULL,
    offsets      bigint[]     NOT NULL,
    CONSTRAINT snapshot_batch_arrays_check CHECK (
        cardinality(ids) >= 1
        AND cardinality(partitions) = cardinality(ids)
        AND cardinality(offsets) = cardinality(ids))
);
COMMENT ON TABLE @SCHEMA@.snapshot_batch IS
    'relay.source: snapshot: published outbox rows by id (migration 0109); read through the '
    'view ledger. Trimmed by ferry-relay with the outbox rows (relay.published_retention).';
CREATE INDEX snapshot_batch_published_at_idx ON @SCHEMA@.snapshot_batch (published_at);

-- True when the snapshot source's position says the outbox row is finished: it must not be
-- reported as unpublished, and it may be trimmed. False for every row while no snapshot source
-- ever ran on this schema (polling mode: a row in the outbox is a row not yet published).
CREATE FUNCTION @SCHEMA@.snapshot_finished(row_txid xid8, row_id bigint, row_shard smallint)
RETURNS boolean LANGUAGE sql STABLE AS $fn$
    SELECT EXISTS (
        SELECT 1 FROM @SCHEMA@.snapshot_position p
        WHERE p.lease_group = row_shard % p.lease_groups
          AND (pg_visible_in_snapshot(row_txid, p.s0)
               OR (p.s1 IS NOT NULL AND row_id <= p.after_id
                   AND pg_visible_in_snapshot(row_txid, p.s1))))
$fn$;

-- The ledger gains the snapshot source's batches, joined to the outbox rows they point at (a
-- row trimmed from the outbox leaves the view with it). The columns are the view's, in order.
CREATE OR REPLACE VIEW @SCHEMA@.ledger AS
SELECT p.message_id, p.topic, p.key, p.partition, p."offset", p.created_at, p.published_at,
       p.relay_epoch, p.lease_group, p.payload, p.headers, NULL::timestamptz AS acked_at
FROM @SCHEMA@.published p
UNION ALL
SELECT u.message_id, u.topic, u.key, u.partition, u."offset", u.created_at, b.published_at,
       b.relay_epoch, b.lease_group,
       CASE WHEN b.payloads IS NULL THEN NULL
            ELSE substring(b.payloads FROM (u.payload_end - u.payload_len + 1)::int
                           FOR u.payload_len) END,
       u.headers, b.acked_at
FROM @SCHEMA@.published_batch b
CROSS JOIN LATERAL (
    SELECT x.*, sum(x.payload_len) OVER (ORDER BY x.n ROWS UNBOUNDED PRECEDING) AS payload_end
    FROM unnest(b.message_ids, b.topics, b.keys, b.partitions, b.offsets, b.created_ats,
                coalesce(b.payload_lens, '{}'::int[]), coalesce(b.headers, '{}'::jsonb[]))
         WITH ORDINALITY
         AS x(message_id, topic, key, partition, "offset", created_at, payload_len, headers, n)
) u
UNION ALL
SELECT o.message_id, o.topic, o.key, s.partition, s."offset", o.created_at, b.published_at,
       b.relay_epoch, b.lease_group, o.payload, o.headers, b.acked_at
FROM @SCHEMA@.snapshot_batch b
CROSS JOIN LATERAL unnest(b.ids, b.partitions, b.offsets) AS s(id, partition, "offset")
JOIN @SCHEMA@.outbox o ON o.id = s.id;
COMMENT ON VIEW @SCHEMA@.ledger IS
    'One row per message the relay published and recorded (published_batch, published, and the '
    'snapshot source''s snapshot_batch joined to the retained outbox rows); acked_at is the '
    'batch''s Kafka acknowledgement on the relay''s clock (NULL before 0108).';

-- Parking in snapshot mode copies the row into `parked` and leaves it in the outbox (finished),
-- and parks the later rows of a parked key too (KEY_PARKED), as WAL mode does. A retry therefore
-- puts the key's parked rows back in order as new outbox rows, deleting the finished originals
-- (message_id is unique in the outbox). Without a snapshot position it behaves as before.
CREATE OR REPLACE FUNCTION @SCHEMA@.retry_parked(parked_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    retried boolean;
    wal_mode boolean;
    first_row @SCHEMA@.parked%ROWTYPE;
    r @SCHEMA@.parked%ROWTYPE;
BEGIN
    wal_mode := EXISTS (SELECT 1 FROM @SCHEMA@.wal_slot);
    IF wal_mode OR EXISTS (SELECT 1 FROM @SCHEMA@.snapshot_position) THEN
        -- The key's parked rows, in order, back on their way; WAL mode as migration 0072.
        SELECT * INTO first_row FROM @SCHEMA@.parked WHERE id = parked_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
        FOR r IN SELECT * FROM @SCHEMA@.parked
                 WHERE topic = first_row.topic AND key = first_row.key AND id >= parked_id
                 ORDER BY id FOR UPDATE
        LOOP
            IF wal_mode THEN
                IF r.topic = '' THEN
                    RAISE EXCEPTION 'ferry: parked row % is an undecodable WAL message (%); it '
                        'cannot be retried, only discarded', r.id, r.reason USING ERRCODE = '22023';
                END IF;
                PERFORM @SCHEMA@.emit_wal(r.message_id, r.topic, r.key, r.payload, r.headers,
                                          r.created_at, r.expires_at);
            ELSE
                DELETE FROM @SCHEMA@.outbox WHERE message_id = r.message_id;
                INSERT INTO @SCHEMA@.outbox (message_id, topic, key, payload, headers,
                                             created_at, available_at, expires_at)
                VALUES (r.message_id, r.topic, r.key, r.payload, r.headers, r.created_at,
                        clock_timestamp(), r.expires_at);
            END IF;
            DELETE FROM @SCHEMA@.parked WHERE id = r.id;
        END LOOP;
        RETURN true;
    END IF;
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
END
$fn$;

-- Whether a message waits in the outbox to be published: its row is there and, in snapshot
-- mode, not finished. Reconciliation and the re-drives ask this instead of "is there a row".
CREATE FUNCTION @SCHEMA@.outbox_pending(message uuid) RETURNS boolean LANGUAGE sql STABLE AS $fn$
    SELECT EXISTS (
        SELECT 1 FROM @SCHEMA@.outbox o
        WHERE o.message_id = message AND NOT @SCHEMA@.snapshot_finished(o.txid, o.id, o.shard))
$fn$;

-- requeue() (migration 0074) in snapshot mode: a finished row of the same message makes way for
-- the re-driven one (message_id is unique in the outbox); an unfinished one means the message
-- is already waiting, as in polling mode.
CREATE OR REPLACE FUNCTION @SCHEMA@.requeue(message_id uuid, topic text, key text, payload bytea,
                                            headers jsonb, created_at timestamptz)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    IF EXISTS (SELECT 1 FROM @SCHEMA@.wal_slot) THEN
        PERFORM @SCHEMA@.emit_wal(requeue.message_id, requeue.topic, requeue.key,
                                  requeue.payload, requeue.headers, requeue.created_at, NULL);
        RETURN true;
    END IF;
    DELETE FROM @SCHEMA@.outbox o
    WHERE o.message_id = requeue.message_id AND @SCHEMA@.snapshot_finished(o.txid, o.id, o.shard);
    INSERT INTO @SCHEMA@.outbox AS o (message_id, topic, key, payload, headers, created_at,
                                      available_at, expires_at)
    VALUES (requeue.message_id, requeue.topic, requeue.key, requeue.payload, requeue.headers,
            requeue.created_at, clock_timestamp(), NULL)
    ON CONFLICT (message_id) DO NOTHING;
    RETURN FOUND;
END
$fn$;
