-- Ferry schema, version 90: the relay records each mark as one ledger row per batch (ADR 0011).
-- @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- Until now a mark inserted one `published` row per message, each with two index entries and
-- its own copy of the payload and headers: about 6 ms of the database's time per 1000 messages,
-- a third of the polling relay's mark and nearly all of the WAL relay's. A batch row holds the
-- same facts as parallel arrays (element i of every array is message i), the payloads back to
-- back in one bytea with their lengths, and one published_at, epoch and lease group.
--
-- Readers use the view `ledger`: one row per publication, from batch rows and from the per-row
-- `published` table, which stays for rows written before this version (and by hand, e.g. in
-- tests). Both tables are partitioned by published_at and trimmed by ferry-relay the same way
-- (relay.published_retention).

CREATE SEQUENCE @SCHEMA@.published_batch_id_seq;
CREATE TABLE @SCHEMA@.published_batch (
    published_at timestamptz   NOT NULL DEFAULT now(),
    -- Orders batches of the same published_at, for keyset walks (reconciliation).
    batch_id     bigint        NOT NULL DEFAULT nextval('@SCHEMA@.published_batch_id_seq'),
    message_count int          NOT NULL,
    relay_epoch  bigint        NOT NULL,
    lease_group  int           NOT NULL,
    message_ids  uuid[]        NOT NULL,
    topics       text[]        NOT NULL,
    keys         text[]        NOT NULL,
    partitions   int[]         NOT NULL,
    offsets      bigint[]      NOT NULL,
    created_ats  timestamptz[] NOT NULL,
    -- NULL when the relay keeps no payloads (then reconciliation cannot re-drive these).
    payload_lens int[],
    payloads     bytea,
    headers      jsonb[],
    CONSTRAINT published_batch_arrays_check CHECK (
        message_count >= 1
        AND cardinality(message_ids) = message_count
        AND cardinality(topics) = cardinality(message_ids)
        AND cardinality(keys) = cardinality(message_ids)
        AND cardinality(partitions) = cardinality(message_ids)
        AND cardinality(offsets) = cardinality(message_ids)
        AND cardinality(created_ats) = cardinality(message_ids)
        AND (payload_lens IS NULL) = (payloads IS NULL)
        AND (payload_lens IS NULL OR cardinality(payload_lens) = cardinality(message_ids))
        AND (headers IS NULL OR cardinality(headers) = cardinality(message_ids)))
) PARTITION BY RANGE (published_at);
COMMENT ON TABLE @SCHEMA@.published_batch IS
    'Published ledger, one row per relay mark (parallel arrays); read it through the view '
    'ledger. Partitions published_batch_p<from>_<to> (epoch seconds) are created and dropped '
    'by ferry-relay (relay.published_retention).';
CREATE INDEX published_batch_published_at_idx
    ON @SCHEMA@.published_batch (published_at, batch_id);
CREATE TABLE @SCHEMA@.published_batch_default PARTITION OF @SCHEMA@.published_batch DEFAULT;

-- Arrays and payloads are stored out of line as they come. Compressing them (pglz) cost the
-- mark more than the rows it replaced (measured: 14–15 ms of server CPU per 1000 messages with
-- compression, 8.5 without, against 15 for per-message rows and 6 for the DELETE alone; ADR
-- 0011). Uncompressed out-of-line values also let substring() read one message's payload
-- without reading the whole batch.
ALTER TABLE @SCHEMA@.published_batch
    ALTER COLUMN message_ids SET STORAGE EXTERNAL,
    ALTER COLUMN topics SET STORAGE EXTERNAL,
    ALTER COLUMN keys SET STORAGE EXTERNAL,
    ALTER COLUMN partitions SET STORAGE EXTERNAL,
    ALTER COLUMN offsets SET STORAGE EXTERNAL,
    ALTER COLUMN created_ats SET STORAGE EXTERNAL,
    ALTER COLUMN payload_lens SET STORAGE EXTERNAL,
    ALTER COLUMN payloads SET STORAGE EXTERNAL,
    ALTER COLUMN headers SET STORAGE EXTERNAL;

-- One row per publication, whichever table holds it. published_at, relay_epoch and
-- lease_group are the batch's; a filter on published_at reaches the tables' indexes.
CREATE VIEW @SCHEMA@.ledger AS
SELECT p.message_id, p.topic, p.key, p.partition, p."offset", p.created_at, p.published_at,
       p.relay_epoch, p.lease_group, p.payload, p.headers
FROM @SCHEMA@.published p
UNION ALL
SELECT u.message_id, u.topic, u.key, u.partition, u."offset", u.created_at, b.published_at,
       b.relay_epoch, b.lease_group,
       CASE WHEN b.payloads IS NULL THEN NULL
            ELSE substring(b.payloads FROM (u.payload_end - u.payload_len + 1)::int
                           FOR u.payload_len) END,
       u.headers
FROM @SCHEMA@.published_batch b
CROSS JOIN LATERAL (
    SELECT x.*, sum(x.payload_len) OVER (ORDER BY x.n ROWS UNBOUNDED PRECEDING) AS payload_end
    FROM unnest(b.message_ids, b.topics, b.keys, b.partitions, b.offsets, b.created_ats,
                coalesce(b.payload_lens, '{}'::int[]), coalesce(b.headers, '{}'::jsonb[]))
         WITH ORDINALITY
         AS x(message_id, topic, key, partition, "offset", created_at, payload_len, headers, n)
) u;
-- (Each array is read once per batch row; the payload is read per message, as a slice of the
-- uncompressed value, and only when selected.)
COMMENT ON VIEW @SCHEMA@.ledger IS
    'One row per message the relay published and recorded (published_batch and published).';
