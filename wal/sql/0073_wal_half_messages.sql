-- Ferry schema, version 73: half messages in WAL mode (ADR 0070, rule 4). @SCHEMA@ is replaced
-- by the quoted schema name when the migration runs.
--
-- A half message's commit decision is the committed event. In polling mode decide_half inserts
-- the message into the outbox table in the decision's transaction. In WAL mode (a replication
-- slot is registered for this schema, `ferryctl wal setup`) the relay never reads that table, so
-- the decision emits the message with emit_wal instead, in the same transaction as the
-- compare-and-set: the message is in the WAL if and only if the decision committed. A half
-- message with a delivery delay cannot be published in WAL mode: prepare() refuses a positive
-- deliver_after then, and decide_half refuses to commit one prepared with a delay before the
-- switch (SQLSTATE 22023, naming deliver_after) rather than publishing it early.

CREATE OR REPLACE FUNCTION @SCHEMA@.decide_half(id uuid, decision text, decided_by text)
RETURNS text LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    target text;
    current_state text;
    h @SCHEMA@.half_message%ROWTYPE;
    t timestamptz;
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
            t := clock_timestamp();
            IF EXISTS (SELECT 1 FROM @SCHEMA@.wal_slot) THEN
                IF coalesce(h.deliver_after, interval '0') > interval '0' THEN
                    RAISE EXCEPTION 'ferry: deliver_after: half message % was prepared with a delay, which WAL mode cannot honour; roll it back and prepare it again without one',
                        id USING ERRCODE = '22023';
                END IF;
                PERFORM @SCHEMA@.emit_wal(h.message_id, h.topic, h.key, h.payload, h.headers, t,
                                          t + h.expires_after);
            ELSE
                INSERT INTO @SCHEMA@.outbox (message_id, topic, key, payload, headers,
                                             created_at, available_at, expires_at)
                VALUES (h.message_id, h.topic, h.key, h.payload, h.headers, t,
                        t + coalesce(h.deliver_after, interval '0'), t + h.expires_after);
            END IF;
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

-- prepare() in WAL mode refuses a delay up front (the C++ half API calls prepare() too).
CREATE FUNCTION @SCHEMA@.refuse_delay_in_wal_mode() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF coalesce(NEW.deliver_after, interval '0') > interval '0'
       AND EXISTS (SELECT 1 FROM @SCHEMA@.wal_slot) THEN
        RAISE EXCEPTION 'ferry: deliver_after: delayed delivery is not available in WAL mode (a message is published when its decision commits)'
            USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END
$fn$;

CREATE TRIGGER half_message_no_delay_in_wal_mode
    BEFORE INSERT ON @SCHEMA@.half_message
    FOR EACH ROW WHEN (NEW.deliver_after IS NOT NULL)
    EXECUTE FUNCTION @SCHEMA@.refuse_delay_in_wal_mode();
