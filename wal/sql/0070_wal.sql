-- Ferry schema, version 70: the producer path of WAL mode (issue 13, ADR 0070).
-- @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- In WAL mode a message is not a row: it is a transactional logical decoding message,
-- pg_logical_emit_message(true, 'ferry', frame), written into the WAL of the producer's own
-- transaction. It is decoded (and published) only if that transaction commits, and it leaves no
-- tuple behind, so there is nothing to delete and no dead tuple to vacuum. The frame layout is
-- documented in ADR 0070 and wal/include/ferry/wal/frame.hpp (decoder: ferry::wal::decode_frame).
--
-- A message emitted while no logical slot exists is never decoded: create the relay's slot
-- before producers switch to enqueue_wal (docs/operations.md).

-- The versioned binary frame (version 1): big-endian, variable fields length-prefixed.
-- The schema's name travels in the frame, so relays of several Ferry schemas sharing one
-- database each publish only their own messages.
CREATE FUNCTION @SCHEMA@.wal_frame(message_id uuid, topic text, key text, payload bytea,
                                   headers jsonb, created_at timestamptz, expires_at timestamptz)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT '\x01'::bytea
        || CASE WHEN expires_at IS NULL THEN '\x00'::bytea ELSE '\x01'::bytea END
        || uuid_send(message_id)
        || int8send((extract(epoch FROM created_at) * 1000000)::bigint)
        || int8send(coalesce((extract(epoch FROM expires_at) * 1000000)::bigint, 0))
        || int4send(octet_length(f.s)) || f.s
        || int4send(octet_length(f.t)) || f.t
        || int4send(octet_length(f.k)) || f.k
        || int4send(octet_length(f.h)) || f.h
        || int4send(octet_length(payload)) || payload
      FROM (SELECT convert_to(btrim('@SCHEMA@', '"'), 'UTF8') AS s,
                   convert_to(topic, 'UTF8') AS t,
                   convert_to(key, 'UTF8') AS k,
                   convert_to(headers::text, 'UTF8') AS h) AS f
$fn$;

-- Emits one framed message in the current transaction. Callers validate first (enqueue_wal,
-- and a half message's commit decision in WAL mode). Returns the message's LSN.
CREATE FUNCTION @SCHEMA@.emit_wal(message_id uuid, topic text, key text, payload bytea,
                                  headers jsonb, created_at timestamptz, expires_at timestamptz)
RETURNS pg_lsn LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    IF current_setting('wal_level') <> 'logical' THEN
        RAISE EXCEPTION 'ferry: WAL mode needs wal_level = logical (the server runs with %)',
            current_setting('wal_level') USING ERRCODE = '55000';
    END IF;
    RETURN pg_logical_emit_message(true, 'ferry',
        @SCHEMA@.wal_frame(message_id, topic, key, payload, headers, created_at, expires_at));
END
$fn$;

-- The SQL producer API of WAL mode: the same arguments, validation and error messages as
-- enqueue() (SQLSTATE 22023 naming the field). Delayed delivery is refused: a WAL message is
-- published when its transaction commits, and holding it back would need a table again.
-- Expiry is kept: expires_at travels in the frame and the relay moves an expired message to the
-- expired table instead of publishing it.
CREATE FUNCTION @SCHEMA@.enqueue_wal(topic text, key text, payload bytea,
                                     headers jsonb DEFAULT '{}'::jsonb,
                                     deliver_after interval DEFAULT NULL,
                                     expires_after interval DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    id uuid := @SCHEMA@.uuid_v7();
    t timestamptz := clock_timestamp();
BEGIN
    PERFORM @SCHEMA@.validate_message(topic, key, payload, headers);
    IF deliver_after IS NOT NULL AND deliver_after < interval '0' THEN
        RAISE EXCEPTION 'ferry: deliver_after: must not be negative' USING ERRCODE = '22023';
    END IF;
    IF deliver_after IS NOT NULL AND deliver_after > interval '0' THEN
        RAISE EXCEPTION 'ferry: deliver_after: delayed delivery is not available in WAL mode (a WAL message is published when its transaction commits); use enqueue() with relay.source: polling'
            USING ERRCODE = '22023';
    END IF;
    IF expires_after IS NOT NULL AND expires_after <= interval '0' THEN
        RAISE EXCEPTION 'ferry: expires_after: must be positive' USING ERRCODE = '22023';
    END IF;
    PERFORM @SCHEMA@.emit_wal(id, topic, key, payload, headers, t, t + expires_after);
    RETURN id;
END
$fn$;
