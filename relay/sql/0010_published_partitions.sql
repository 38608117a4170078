-- Ferry schema, version 10: the published ledger becomes a table partitioned by published_at
-- (ADR 0010). @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- Retention used to DELETE old rows in bounded batches on the lease keeper's thread, at most
-- about 100k rows a minute; above ~1.7k msg/s the ledger (with its payload copies) grew without
-- bound. Now the relay's maintenance thread creates range partitions ahead of time and DROPs a
-- whole partition once its upper bound is older than relay.published_retention, so retention
-- costs one catalog operation per partition whatever the rate. The table name and columns are
-- unchanged: readers (reconciliation, ferryctl) need no change.
--
-- Rows whose published_at falls outside every range partition (before the relay created the
-- first one, or an explicit old timestamp) land in published_default, which the relay trims with
-- bounded DELETEs as before.

ALTER TABLE @SCHEMA@.published RENAME TO published_unpartitioned;
ALTER INDEX @SCHEMA@.published_message_id_idx RENAME TO published_unpartitioned_message_id_idx;
ALTER INDEX @SCHEMA@.published_published_at_idx RENAME TO published_unpartitioned_published_at_idx;

CREATE TABLE @SCHEMA@.published (
    message_id   uuid        NOT NULL,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    partition    int         NOT NULL,
    "offset"     bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    relay_epoch  bigint      NOT NULL,
    lease_group  int         NOT NULL,
    payload      bytea,
    headers      jsonb
) PARTITION BY RANGE (published_at);
COMMENT ON TABLE @SCHEMA@.published IS
    'Published ledger, partitioned by published_at; partitions published_p<from>_<to> (epoch '
    'seconds) are created and dropped by ferry-relay (relay.published_retention).';
CREATE INDEX published_message_id_idx ON @SCHEMA@.published (message_id);
CREATE INDEX published_published_at_idx ON @SCHEMA@.published (published_at);
CREATE TABLE @SCHEMA@.published_default PARTITION OF @SCHEMA@.published DEFAULT;

-- Existing rows stay readable: a non-empty old ledger becomes the partition that ends just after
-- its newest row (and is dropped by the same rule once that is past the retention); an empty
-- one is dropped.
DO $$
DECLARE
    newest timestamptz;
    upper_s bigint;
BEGIN
    SELECT max(published_at) INTO newest FROM @SCHEMA@.published_unpartitioned;
    IF newest IS NULL THEN
        DROP TABLE @SCHEMA@.published_unpartitioned;
    ELSE
        upper_s := floor(extract(epoch FROM newest))::bigint + 1;
        EXECUTE format('ALTER TABLE @SCHEMA@.published_unpartitioned RENAME TO %I',
                       'published_p0_' || upper_s);
        EXECUTE format('ALTER TABLE @SCHEMA@.published ATTACH PARTITION @SCHEMA@.%I '
                       'FOR VALUES FROM (MINVALUE) TO (%L)',
                       'published_p0_' || upper_s, to_timestamp(upper_s));
    END IF;
END
$$;
