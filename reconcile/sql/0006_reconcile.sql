-- Ferry schema, version 6: reconciliation (ADR 0005). @SCHEMA@ is replaced by the quoted schema
-- name when the migration runs.

-- The ledger keeps what was published so reconciliation can re-drive a lost message with its
-- original id, payload and headers. Rows written before this migration have NULL here and are
-- reported, not re-driven. Cost: one payload per published message for relay.published_retention.
ALTER TABLE @SCHEMA@.published ADD COLUMN payload bytea, ADD COLUMN headers jsonb;

-- One row per reconciliation run. `scope` names the consumer groups it checked (sorted, comma
-- separated), so reports of different scopes never mix. Runs of one schema are serialized by a
-- session advisory lock (see ferry::reconcile::run): a second instance skips instead of running
-- the same window twice.
CREATE TABLE @SCHEMA@.reconcile_run (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope        text        NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    status       text        NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'succeeded', 'failed')),
    redrive      boolean     NOT NULL,
    scanned      bigint      NOT NULL DEFAULT 0,
    counts       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    redriven     int         NOT NULL DEFAULT 0,
    owner        text,
    error        text
);
CREATE INDEX reconcile_run_started_idx ON @SCHEMA@.reconcile_run (started_at);

-- One row per anomaly found. group_id is NULL for producer-side kinds (stuck_unpublished,
-- stuck_half, parked, expired), which concern every group.
CREATE TABLE @SCHEMA@.reconcile_item (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint      NOT NULL REFERENCES @SCHEMA@.reconcile_run (id) ON DELETE CASCADE,
    kind         text        NOT NULL CHECK (kind IN ('missing', 'stuck_unpublished', 'stuck_half',
                     'parked', 'expired', 'dead_lettered', 'duplicate_absorbed', 'redriven')),
    group_id     text,
    message_id   uuid,
    topic        text,
    key          text,
    created_at   timestamptz,
    event_at     timestamptz,  -- published, parked, expired, dead-lettered or prepared at
    detail       text        NOT NULL DEFAULT '',
    action       text        NOT NULL DEFAULT 'none'
);
CREATE UNIQUE INDEX reconcile_item_once_idx
    ON @SCHEMA@.reconcile_item (run_id, kind, coalesce(group_id, ''), message_id);
CREATE INDEX reconcile_item_kind_idx ON @SCHEMA@.reconcile_item (kind, run_id);

-- Views for ad-hoc queries (documented in reconcile/README.md).
CREATE VIEW @SCHEMA@.reconcile_latest AS
    SELECT DISTINCT ON (scope) * FROM @SCHEMA@.reconcile_run
    WHERE status = 'succeeded' ORDER BY scope, started_at DESC;

CREATE VIEW @SCHEMA@.reconcile_items_by_kind AS
    SELECT r.id AS run_id, r.scope, r.window_start, r.window_end, i.kind, i.group_id,
           count(*) AS items, count(*) FILTER (WHERE i.action = 'redriven') AS redriven
    FROM @SCHEMA@.reconcile_run r JOIN @SCHEMA@.reconcile_item i ON i.run_id = r.id
    GROUP BY r.id, r.scope, r.window_start, r.window_end, i.kind, i.group_id;

CREATE VIEW @SCHEMA@.reconcile_open_items AS
    SELECT i.*, r.scope, r.started_at AS run_started_at
    FROM @SCHEMA@.reconcile_latest r JOIN @SCHEMA@.reconcile_item i ON i.run_id = r.id;
