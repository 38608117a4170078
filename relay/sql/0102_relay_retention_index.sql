-- The relay's part of outbox/sql/0080_retention.sql, for a database migrated without the
-- consumer (`ferryctl migrate --only relay`, ADR 0015): 0080 also indexes the consumer's
-- dead_letter, so it is applied only where that exists. In a schema that has 0080 this is a
-- no-op (same index name and definition, IF NOT EXISTS). @SCHEMA@ is replaced by the quoted
-- schema name when the migration runs.

-- Parked rows, by parking time (measured: ferry_retention_oldest_age_seconds{table="parked"}).
CREATE INDEX IF NOT EXISTS parked_parked_at_idx ON @SCHEMA@.parked (parked_at);
