-- Ferry schema, version 20: partition ownership fencing for the consumer runtime (ADR 0020).
-- One row per (consumer group, topic, partition): the instance that owns it now and an epoch
-- that grows with every assignment. A consumer takes ownership (epoch + 1) when a partition is
-- assigned, before it loads the blocked keys of ordered retry. Every retry, parking and dead
-- letter write of the live path locks this row FOR SHARE in its own transaction and checks the
-- owner and epoch, so a handler abandoned at revoke can no longer write a retry row after the
-- new owner loaded its blocked keys: either its write commits first (and the new owner sees it)
-- or it is refused.
CREATE TABLE @SCHEMA@.consumer_partition_owner (
    group_id   text        NOT NULL,
    topic      text        NOT NULL,
    partition  int         NOT NULL,
    owner      text        NOT NULL,
    epoch      bigint      NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
COMMENT ON TABLE @SCHEMA@.consumer_partition_owner IS
    'Consumer partition owner and epoch: fences retry/dead-letter writes of revoked partitions.';
