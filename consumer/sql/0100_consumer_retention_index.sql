-- The consumer's part of outbox/sql/0080_retention.sql, for a database migrated for the
-- consumer alone (`ferryctl migrate --only consumer`, ADR 0015): 0080 also indexes tables of
-- the outbox and the relay, so it is applied only where those exist. In a schema that has 0080
-- this is a no-op (same index name and definition, IF NOT EXISTS). @SCHEMA@ is replaced by the
-- quoted schema name when the migration runs.

-- Replayed dead letters, by replay time (retention.dead_letter).
CREATE INDEX IF NOT EXISTS dead_letter_replayed_idx ON @SCHEMA@.dead_letter (replayed_at)
    WHERE replayed_at IS NOT NULL;
