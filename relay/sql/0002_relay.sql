-- Ferry schema, version 2: the relay's tables (ADR 0002). @SCHEMA@ is replaced by the quoted
-- schema name when the migration runs.

-- One row per lease group. Group g owns the outbox shards s with s % (number of groups) = g.
-- `epoch` increases on every acquisition; it is the fencing token checked (row locked) by every
-- transaction that marks rows, so a paused former owner cannot mark. Times are the database's.
CREATE TABLE @SCHEMA@.relay_lease (
    lease_group int         PRIMARY KEY CHECK (lease_group >= 0),
    owner       text,
    epoch       bigint      NOT NULL DEFAULT 0,
    expires_at  timestamptz,
    acquired_at timestamptz
);
COMMENT ON TABLE @SCHEMA@.relay_lease IS
    'Relay leases: one row per lease group; owner + epoch fence publishing and marking.';

-- Live relay instances, for fair sharing of lease groups (each takes ceil(groups / live)).
-- `lease_groups` is the instance's configured group count: instances that disagree would map a
-- key to different groups, so none of them acquires a group while a disagreeing one is live.
CREATE TABLE @SCHEMA@.relay_instance (
    instance_id  text        PRIMARY KEY,
    lease_groups int         NOT NULL,
    heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The published ledger: what Kafka acknowledged, for reconciliation during a retention window.
-- The relay deletes rows older than relay.published_retention in bounded batches.
CREATE TABLE @SCHEMA@.published (
    message_id   uuid        NOT NULL,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    partition    int         NOT NULL,
    "offset"     bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    relay_epoch  bigint      NOT NULL,
    lease_group  int         NOT NULL
);
-- Not unique: a crash between the Kafka ack and the mark republishes a batch, and both
-- publications are facts worth keeping.
CREATE INDEX published_message_id_idx ON @SCHEMA@.published (message_id);
CREATE INDEX published_published_at_idx ON @SCHEMA@.published (published_at);

-- Messages Kafka refused permanently. `id` is the outbox id, so a retry can re-insert the row
-- with its original id (OVERRIDING SYSTEM VALUE) and keep its place in the key's order. While a
-- row of (topic, key) is parked, later rows of that key are held back.
CREATE TABLE @SCHEMA@.parked (
    id           bigint      PRIMARY KEY,
    message_id   uuid        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    payload      bytea       NOT NULL,
    headers      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL,
    available_at timestamptz NOT NULL,
    expires_at   timestamptz,
    parked_at    timestamptz NOT NULL DEFAULT now(),
    reason       text        NOT NULL,
    error_code   text        NOT NULL,
    attempts     int         NOT NULL DEFAULT 1
);
CREATE INDEX parked_topic_key_idx ON @SCHEMA@.parked (topic, key);

-- Messages whose expires_at passed before the relay published them. Never sent to Kafka.
CREATE TABLE @SCHEMA@.expired (
    id           bigint      PRIMARY KEY,
    message_id   uuid        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    payload      bytea       NOT NULL,
    headers      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL,
    available_at timestamptz NOT NULL,
    expires_at   timestamptz,
    expired_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX expired_expired_at_idx ON @SCHEMA@.expired (expired_at);

-- Operator actions on parked messages (ferryctl wraps them). retry_parked moves the row back into
-- the outbox with its original id, so it is published before the later rows of its key that were
-- held back behind it; discard_parked deletes it. Both return false when no such row is parked.
CREATE FUNCTION @SCHEMA@.retry_parked(parked_id bigint) RETURNS boolean
LANGUAGE sql VOLATILE AS $fn$
    WITH moved AS (DELETE FROM @SCHEMA@.parked WHERE id = parked_id RETURNING *),
    restored AS (
        INSERT INTO @SCHEMA@.outbox (id, message_id, topic, key, payload, headers, created_at,
                                     available_at, expires_at)
        OVERRIDING SYSTEM VALUE
        SELECT id, message_id, topic, key, payload, headers, created_at, clock_timestamp(),
               expires_at FROM moved
        RETURNING 1)
    SELECT count(*) > 0 FROM restored
$fn$;

CREATE FUNCTION @SCHEMA@.discard_parked(parked_id bigint) RETURNS boolean
LANGUAGE sql VOLATILE AS $fn$
    WITH gone AS (DELETE FROM @SCHEMA@.parked WHERE id = parked_id RETURNING 1)
    SELECT count(*) > 0 FROM gone
$fn$;
