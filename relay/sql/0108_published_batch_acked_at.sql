-- Ferry schema, version 108: each ledger batch row records when Kafka acknowledged the batch.
-- @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- published_at is the mark's time (now() of the transaction that writes the row), which comes
-- after the acknowledgement and after any wait for a free marker. acked_at is the moment the
-- relay had the last delivery report of the batch: when every message in the row was in Kafka.
-- It is the relay host's clock (published_at is the database's). It is NULL for rows written
-- before this version and for the per-row table `published`. published_at stays the partition
-- key, so trimming and reconciliation keep their windows on the database clock.
ALTER TABLE @SCHEMA@.published_batch ADD COLUMN acked_at timestamptz;
COMMENT ON COLUMN @SCHEMA@.published_batch.acked_at IS
    'When the relay had every delivery report of this batch from Kafka (relay host clock); '
    'NULL before migration 0108.';

-- The view gains the column at its end (CREATE OR REPLACE VIEW keeps the existing columns).
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
) u;
COMMENT ON VIEW @SCHEMA@.ledger IS
    'One row per message the relay published and recorded (published_batch and published); '
    'acked_at is the batch''s Kafka acknowledgement on the relay''s clock (NULL before 0108).';
