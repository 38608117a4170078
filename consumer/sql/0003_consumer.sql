-- Ferry schema, version 3: the consumer side (ADR 0003). A consumer service runs
-- `ferryctl migrate` against its own database; these tables live in the same migration track as
-- the outbox so one schema version describes both sides. @SCHEMA@ is replaced by the quoted
-- schema name when the migration runs.

-- The authoritative dedup: one row per (consumer group, message) whose effect committed. The row
-- is inserted in the effect's own transaction, before the handler runs; a conflict means the
-- message was already applied, and the transaction rolls back.
CREATE TABLE @SCHEMA@.inbox (
    group_id     text        NOT NULL,
    message_id   uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, message_id)
);
CREATE INDEX inbox_processed_at_idx ON @SCHEMA@.inbox (processed_at);
COMMENT ON TABLE @SCHEMA@.inbox IS
    'Consumer inbox: (group_id, message_id) of every applied message; the primary key is the dedup.';

-- Messages waiting for another attempt, and (ordered topics) later messages of the same key
-- waiting behind them (attempts = 0). A row is durable before its Kafka offset is committed.
-- Within (group_id, topic, key) rows run in (partition, offset) order when `ordered`.
-- claimed_by / claim_expires_at make the retry worker safe with several instances: a worker
-- claims due rows (FOR UPDATE SKIP LOCKED) and every later update checks claimed_by.
CREATE TABLE @SCHEMA@.retry (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id         text        NOT NULL,
    topic            text        NOT NULL,
    partition        int         NOT NULL,
    "offset"         bigint      NOT NULL,
    key              text,
    message_id       uuid        NOT NULL,
    payload          bytea       NOT NULL,
    headers          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    ordered          boolean     NOT NULL DEFAULT true,
    attempts         int         NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    first_failed_at  timestamptz,
    last_failed_at   timestamptz,
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    claimed_by       text,
    claim_expires_at timestamptz,
    CONSTRAINT retry_message_key UNIQUE (group_id, message_id)
);
CREATE INDEX retry_due_idx ON @SCHEMA@.retry (group_id, next_attempt_at);
CREATE INDEX retry_key_idx ON @SCHEMA@.retry (group_id, topic, key, partition, "offset");

-- Messages Ferry gave up on: retries exhausted, a handler that said "permanent", or a malformed
-- envelope (message_id NULL, replayable false). On ordered topics a dead letter with
-- blocks_key holds the later messages of its key (DESIGN.md §2 invariant 3) until it is replayed
-- (moved back into retry, replayed_at set) or purged.
CREATE TABLE @SCHEMA@.dead_letter (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id        text        NOT NULL,
    topic           text        NOT NULL,
    partition       int         NOT NULL,
    "offset"        bigint      NOT NULL,
    key             text,
    message_id      uuid,
    payload         bytea       NOT NULL,
    headers         jsonb       NOT NULL DEFAULT '[]'::jsonb,
    ordered         boolean     NOT NULL DEFAULT true,
    reason          text        NOT NULL,
    error_code      text        NOT NULL DEFAULT '',
    attempts        int         NOT NULL DEFAULT 0,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    dead_at         timestamptz NOT NULL DEFAULT now(),
    replayable      boolean     NOT NULL DEFAULT true,
    blocks_key      boolean     NOT NULL DEFAULT false,
    replayed_at     timestamptz
);
CREATE INDEX dead_letter_group_idx ON @SCHEMA@.dead_letter (group_id, dead_at);
CREATE INDEX dead_letter_key_idx ON @SCHEMA@.dead_letter (group_id, topic, key)
    WHERE blocks_key AND replayed_at IS NULL;
COMMENT ON TABLE @SCHEMA@.dead_letter IS
    'Consumer dead letters with their reason; replay moves a row back into retry.';
