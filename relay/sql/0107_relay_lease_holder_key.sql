-- Ferry schema, version 107: owner and epoch become key columns of relay_lease, so two marks of
-- one lease group can run at once (ADR 0002, fourteenth amendment).
-- @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- A mark fences itself by locking its group's lease row and checking owner, epoch and expiry
-- in the same statement. It used to take the row FOR UPDATE, so the marks of a group ran one
-- at a time. It now takes it FOR KEY SHARE, which other marks share. What must still wait for
-- a mark in flight is any change of owner or epoch (a takeover, a release): otherwise a mark
-- that passed its check could commit after the group changed hands.
--
-- PostgreSQL locks a row FOR UPDATE, which conflicts with FOR KEY SHARE, when an UPDATE changes
-- a column of a unique index (a "key" column). Otherwise it takes FOR NO KEY UPDATE, which does
-- not. This index makes owner and epoch key columns. Every UPDATE that changes them, from any
-- writer (this relay, an older one, ferryctl, SQL by hand), waits for the marks in flight. And
-- every mark that starts after such an UPDATE re-reads the row once it commits and is fenced.
-- The lease keeper's renewal changes only expires_at: it neither waits for marks nor makes them
-- wait. `lease_group` is the primary key, so the index can never refuse a row.
CREATE UNIQUE INDEX relay_lease_holder_key ON @SCHEMA@.relay_lease (lease_group, owner, epoch);
COMMENT ON INDEX @SCHEMA@.relay_lease_holder_key IS
    'Makes owner and epoch key columns: changing them locks the row FOR UPDATE and so waits for '
    'the marks in flight, which hold it FOR KEY SHARE (migration 0107).';
