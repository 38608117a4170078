-- Ferry schema, version 103: reconciliation in WAL mode (ADR 0070, rule 10). @SCHEMA@ is replaced
-- by the quoted schema name when the migration runs.
--
-- In WAL mode a committed message that is not published yet has no outbox row: it waits in the
-- WAL behind the confirmed position of the relay's replication slot. So each run records the
-- state of every slot registered for the schema (wal_slot), and a registered slot that is
-- missing, lost or unusable is reported as an item of kind 'slot_lost': the one way a committed
-- message can go unpublished in WAL mode, with the last confirmed position on record.

-- One object per registered slot, at the time of the run: slot, state (ok | missing | lost |
-- unusable), and where the slot exists wal_status, active, confirmed_flush_lsn, lag_bytes and
-- safe_wal_size. '[]' in polling mode.
ALTER TABLE @SCHEMA@.reconcile_run ADD COLUMN wal_slots jsonb NOT NULL DEFAULT '[]'::jsonb;

ALTER TABLE @SCHEMA@.reconcile_item DROP CONSTRAINT reconcile_item_kind_check;
ALTER TABLE @SCHEMA@.reconcile_item ADD CONSTRAINT reconcile_item_kind_check CHECK (
    kind IN ('missing', 'stuck_unpublished', 'stuck_half', 'parked', 'expired', 'dead_lettered',
             'duplicate_absorbed', 'redriven', 'slot_lost'));
