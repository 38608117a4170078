-- Ferry schema, version 5: the check-back mailbox of the `callback` resolver (ADR 0004).
-- @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- Producers run a responder (ferry::outbox::checkback_responder) that registers its instance
-- here with a heartbeat and answers check requests addressed to it or to its group. The relay's
-- check-back scheduler writes a request, first targeted at the instance that prepared the half
-- message, then at any live instance of the group, and reads the answer. Services need no
-- inbound network port; both sides already talk to this database.

CREATE TABLE @SCHEMA@.producer_instance (
    producer_group text        NOT NULL,
    instance_id    text        NOT NULL,
    heartbeat_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (producer_group, instance_id)
);

CREATE TABLE @SCHEMA@.check_request (
    request_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      uuid        NOT NULL,
    producer_group  text        NOT NULL,
    -- NULL: any live instance of the group may answer.
    target_instance text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    deadline        timestamptz NOT NULL,
    claimed_by      text,
    answered_at     timestamptz,
    answer          text CHECK (answer IN ('commit', 'rollback', 'unknown')),
    answer_detail   text
);
-- Responders look for open requests of their group.
CREATE INDEX check_request_open_idx ON @SCHEMA@.check_request (producer_group, request_id)
    WHERE answered_at IS NULL;
COMMENT ON TABLE @SCHEMA@.check_request IS
    'Check-back requests of the callback resolver; answered rows are kept briefly for audit.';
