-- Ferry schema, version 4: half messages (RocketMQ-style transactional messages), ADR 0004.
-- @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- A half message waits here, invisible to the relay and to consumers, until a decision:
--   pending --commit--> committed   (the message is inserted into the outbox, same id)
--   pending --rollback--> rolled_back
--   pending --checks run out--> parked   (an operator or a late producer decision resolves it)
--   parked  --commit/rollback--> committed / rolled_back
-- Every transition is a compare-and-set on `state` in one UPDATE, so exactly one decision wins
-- a race; a contradicting decision is refused with SQLSTATE FH001, an unknown id with FH002.
-- All times are the database's clock.

CREATE TABLE @SCHEMA@.half_message (
    message_id        uuid        PRIMARY KEY,
    topic             text        NOT NULL,
    key               text        NOT NULL,
    payload           bytea       NOT NULL,
    headers           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    tx_ref            text        NOT NULL,
    producer_group    text        NOT NULL,
    producer_instance text,
    state             text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'committed', 'rolled_back', 'parked')),
    prepared_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    decided_at        timestamptz,
    decided_by        text CHECK (decided_by IN ('producer', 'checkback', 'operator')),
    check_first_after interval    NOT NULL DEFAULT interval '6 seconds',
    check_interval    interval    NOT NULL DEFAULT interval '30 seconds',
    max_checks        int         NOT NULL DEFAULT 15 CHECK (max_checks >= 0),
    check_count       int         NOT NULL DEFAULT 0,
    next_check_at     timestamptz,
    last_check_at     timestamptz,
    last_check_result text,
    deliver_after     interval,
    expires_after     interval,
    CONSTRAINT half_topic_check CHECK (
        topic ~ '^[A-Za-z0-9._-]{1,249}$' AND topic <> '.' AND topic <> '..'),
    CONSTRAINT half_tx_ref_check CHECK (length(tx_ref) BETWEEN 1 AND 1024),
    CONSTRAINT half_group_check CHECK (length(producer_group) BETWEEN 1 AND 255)
);
-- The check-back scheduler's queue: pending rows by due time.
CREATE INDEX half_message_due_idx ON @SCHEMA@.half_message (next_check_at)
    WHERE state = 'pending';
CREATE INDEX half_message_state_idx ON @SCHEMA@.half_message (state, prepared_at)
    WHERE state IN ('pending', 'parked');
COMMENT ON TABLE @SCHEMA@.half_message IS
    'Half messages: prepared, not yet decided (or decided, kept for audit and idempotent repeats).';

-- Prepares a half message. Validation is the outbox's. Returns the id the message will keep
-- when it is committed into the outbox.
CREATE FUNCTION @SCHEMA@.prepare(topic text, key text, payload bytea, headers jsonb, tx_ref text,
                                 producer_group text DEFAULT 'default',
                                 producer_instance text DEFAULT NULL,
                                 check_first_after interval DEFAULT NULL,
                                 check_interval interval DEFAULT NULL,
                                 max_checks int DEFAULT NULL,
                                 message_id uuid DEFAULT NULL,
                                 deliver_after interval DEFAULT NULL,
                                 expires_after interval DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    id uuid := coalesce(message_id, @SCHEMA@.uuid_v7());
    first_after interval := coalesce(check_first_after, interval '6 seconds');
BEGIN
    PERFORM @SCHEMA@.validate_message(topic, key, payload, coalesce(headers, '{}'::jsonb));
    IF tx_ref IS NULL OR tx_ref = '' OR length(tx_ref) > 1024 THEN
        RAISE EXCEPTION 'ferry: tx_ref: must be 1-1024 characters' USING ERRCODE = '22023';
    END IF;
    IF producer_group IS NULL OR producer_group = '' OR length(producer_group) > 255 THEN
        RAISE EXCEPTION 'ferry: producer_group: must be 1-255 characters' USING ERRCODE = '22023';
    END IF;
    IF first_after < interval '0' OR coalesce(check_interval, interval '1s') <= interval '0' THEN
        RAISE EXCEPTION 'ferry: check_first_after must not be negative and check_interval must be positive'
            USING ERRCODE = '22023';
    END IF;
    IF deliver_after IS NOT NULL AND deliver_after < interval '0' THEN
        RAISE EXCEPTION 'ferry: deliver_after: must not be negative' USING ERRCODE = '22023';
    END IF;
    IF expires_after IS NOT NULL AND expires_after <= interval '0' THEN
        RAISE EXCEPTION 'ferry: expires_after: must be positive' USING ERRCODE = '22023';
    END IF;
    IF coalesce(max_checks, 15) < 0 THEN
        RAISE EXCEPTION 'ferry: max_checks: must not be negative' USING ERRCODE = '22023';
    END IF;
    INSERT INTO @SCHEMA@.half_message AS h (message_id, topic, key, payload, headers, tx_ref,
        producer_group, producer_instance, check_first_after, check_interval, max_checks,
        next_check_at, deliver_after, expires_after)
    VALUES (id, topic, key, payload, coalesce(headers, '{}'::jsonb), tx_ref, producer_group,
            producer_instance, first_after, coalesce(check_interval, interval '30 seconds'),
            coalesce(max_checks, 15), clock_timestamp() + first_after, deliver_after,
            expires_after);
    RETURN id;
END
$fn$;

-- Records a decision. `decision` is 'commit' or 'rollback'; `decided_by` is 'producer',
-- 'checkback' or 'operator'. Returns the state after the call. Repeating the recorded decision
-- is a no-op that returns the same state (idempotent). A contradicting decision raises FH001,
-- except for decided_by = 'checkback', which never overrides and simply returns the state the
-- row already has (the producer's or operator's decision won the race).
CREATE FUNCTION @SCHEMA@.decide_half(id uuid, decision text, decided_by text)
RETURNS text LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    target text;
    current_state text;
    h @SCHEMA@.half_message%ROWTYPE;
BEGIN
    IF decision NOT IN ('commit', 'rollback') THEN
        RAISE EXCEPTION 'ferry: decision: must be commit or rollback, got %', decision
            USING ERRCODE = '22023';
    END IF;
    target := CASE decision WHEN 'commit' THEN 'committed' ELSE 'rolled_back' END;
    -- The compare-and-set. A check-back may only decide a pending message; a producer or an
    -- operator may also resolve a parked one.
    UPDATE @SCHEMA@.half_message AS m
       SET state = target, decided_at = clock_timestamp(), decided_by = decide_half.decided_by,
           next_check_at = NULL
     WHERE m.message_id = id
       AND (m.state = 'pending' OR (m.state = 'parked' AND decide_half.decided_by <> 'checkback'))
    RETURNING m.* INTO h;
    IF FOUND THEN
        IF target = 'committed' THEN
            INSERT INTO @SCHEMA@.outbox (message_id, topic, key, payload, headers, created_at,
                                         available_at, expires_at)
            SELECT h.message_id, h.topic, h.key, h.payload, h.headers, t,
                   t + coalesce(h.deliver_after, interval '0'), t + h.expires_after
              FROM (SELECT clock_timestamp() AS t) AS c;
        END IF;
        RETURN target;
    END IF;
    SELECT m.state INTO current_state FROM @SCHEMA@.half_message AS m WHERE m.message_id = id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ferry: half message % does not exist', id USING ERRCODE = 'FH002';
    END IF;
    IF current_state = target OR decide_half.decided_by = 'checkback' THEN
        RETURN current_state;
    END IF;
    RAISE EXCEPTION 'ferry: cannot % half message %: it is already %', decision, id,
        replace(current_state, '_', ' ') USING ERRCODE = 'FH001';
END
$fn$;

CREATE FUNCTION @SCHEMA@.commit_half(id uuid) RETURNS text
LANGUAGE sql VOLATILE AS $fn$ SELECT @SCHEMA@.decide_half(id, 'commit', 'producer') $fn$;

CREATE FUNCTION @SCHEMA@.rollback_half(id uuid) RETURNS text
LANGUAGE sql VOLATILE AS $fn$ SELECT @SCHEMA@.decide_half(id, 'rollback', 'producer') $fn$;
