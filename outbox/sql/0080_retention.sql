-- Retention of the tables that keep rows after a message's life ended (docs/operations.md,
-- "Retention"). The job deletes rows past each table's window in bounded batches; these
-- indexes let each batch find its rows without scanning the table. @SCHEMA@ is replaced by the
-- quoted schema name when the migration runs.

-- Decided half messages, by decision time (retention.half_message).
CREATE INDEX IF NOT EXISTS half_message_decided_idx ON @SCHEMA@.half_message (decided_at)
    WHERE state IN ('committed', 'rolled_back');

-- Replayed dead letters, by replay time (retention.dead_letter).
CREATE INDEX IF NOT EXISTS dead_letter_replayed_idx ON @SCHEMA@.dead_letter (replayed_at)
    WHERE replayed_at IS NOT NULL;

-- Check-back mailbox requests, by creation time (retention.check_request).
CREATE INDEX IF NOT EXISTS check_request_created_idx ON @SCHEMA@.check_request (created_at);

-- Parked rows, by parking time (measured: ferry_retention_oldest_age_seconds{table="parked"}).
CREATE INDEX IF NOT EXISTS parked_parked_at_idx ON @SCHEMA@.parked (parked_at);
