-- The campaign's own tables, next to Ferry's schema in each run's database (scripts/chaos).
-- key_seq: one row per key; a producer takes the next seq under the row lock, in the same
-- transaction as its enqueue, so the per-key commit order is the seq order.
CREATE SCHEMA IF NOT EXISTS chaos;
CREATE TABLE IF NOT EXISTS chaos.key_seq (
    key text PRIMARY KEY,
    seq bigint NOT NULL DEFAULT 0
);
-- The committed set: written in the enqueue's transaction, so a row exists iff it committed.
CREATE TABLE IF NOT EXISTS chaos.sent (
    message_id   uuid PRIMARY KEY,
    key          text   NOT NULL,
    seq          bigint NOT NULL,  -- -1: no order claim
    producer     int    NOT NULL,
    via          text   NOT NULL,  -- writer | sql | hold
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- The local transaction of a half message: what the check-back's sql resolver reads.
CREATE TABLE IF NOT EXISTS chaos.half_local (
    tx_ref     text PRIMARY KEY,
    message_id uuid NOT NULL,
    decision   text NOT NULL CHECK (decision IN ('commit', 'rollback'))
);
-- One row per applied effect. Deliberately NO unique constraint: a duplicate stays visible.
CREATE TABLE IF NOT EXISTS chaos.witness (
    id             bigint GENERATED ALWAYS AS IDENTITY,
    consumer_group text   NOT NULL,
    message_id     uuid   NOT NULL,
    key            text   NOT NULL,
    seq            bigint NOT NULL,
    instance       text   NOT NULL,
    applied_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS witness_group_message_idx ON chaos.witness (consumer_group, message_id);
