-- The outbox's part of 0080_retention.sql, for a database migrated without the relay or the
-- consumer (`ferryctl migrate --only outbox`, ADR 0015): 0080 also indexes their tables, so it
-- is applied only where those exist. In a schema that has 0080 this is a no-op (same index
-- names and definitions, IF NOT EXISTS). @SCHEMA@ is replaced by the quoted schema name when the
-- migration runs.

-- Decided half messages, by decision time (retention.half_message).
CREATE INDEX IF NOT EXISTS half_message_decided_idx ON @SCHEMA@.half_message (decided_at)
    WHERE state IN ('committed', 'rolled_back');

-- Check-back mailbox requests, by creation time (retention.check_request).
CREATE INDEX IF NOT EXISTS check_request_created_idx ON @SCHEMA@.check_request (created_at);
