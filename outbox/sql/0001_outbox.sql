-- Ferry schema, version 1: the outbox table, the settings it is validated against, and the SQL
-- producer API. @SCHEMA@ is replaced by the quoted schema name when the migration runs.

CREATE TABLE @SCHEMA@.settings (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
COMMENT ON TABLE @SCHEMA@.settings IS
    'Limits the SQL producer API enforces (the C++ writer takes the same limits from its options).';
INSERT INTO @SCHEMA@.settings (name, value) VALUES
    ('max_payload_bytes', 1048576),
    ('max_key_bytes', 4096),
    ('max_headers_bytes', 65536);

-- One row per committed, not yet published message. The relay deletes a row when Kafka has
-- acknowledged it, so the table stays small and never needs a "published" flag (see ADR 0002).
CREATE TABLE @SCHEMA@.outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   uuid        NOT NULL,
    topic        text        NOT NULL,
    key          text        NOT NULL DEFAULT '',
    payload      bytea       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    available_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz,
    -- 256 virtual shards by key: the unit a relay instance leases, so one key is only ever
    -- published by one instance at a time.
    shard        smallint    NOT NULL GENERATED ALWAYS AS ((hashtext(key) & 255)::smallint) STORED,
    CONSTRAINT outbox_message_id_key UNIQUE (message_id),
    CONSTRAINT outbox_topic_check CHECK (
        topic ~ '^[A-Za-z0-9._-]{1,249}$' AND topic <> '.' AND topic <> '..'),
    CONSTRAINT outbox_headers_check CHECK (jsonb_typeof(headers) = 'object')
);
CREATE INDEX outbox_shard_id_idx ON @SCHEMA@.outbox (shard, id);
CREATE INDEX outbox_expires_idx ON @SCHEMA@.outbox (expires_at) WHERE expires_at IS NOT NULL;
COMMENT ON TABLE @SCHEMA@.outbox IS
    'Committed messages waiting for the relay. A row exists iff its producer transaction committed.';

-- UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, variant 10, random bits.
CREATE FUNCTION @SCHEMA@.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $fn$
    SELECT encode(
        set_bit(set_bit(set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                                      FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1), 54, 1), 55, 0),
        'hex')::uuid
$fn$;

-- Raises invalid_parameter_value (22023) naming the field, so every client language gets the
-- same errors as the C++ writer. Returns nothing; nothing is written when it raises.
CREATE FUNCTION @SCHEMA@.validate_message(topic text, key text, payload bytea, headers jsonb)
RETURNS void LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    max_payload bigint;
    max_key bigint;
    max_headers bigint;
    bad_header text;
BEGIN
    SELECT value INTO max_payload FROM @SCHEMA@.settings WHERE name = 'max_payload_bytes';
    SELECT value INTO max_key FROM @SCHEMA@.settings WHERE name = 'max_key_bytes';
    SELECT value INTO max_headers FROM @SCHEMA@.settings WHERE name = 'max_headers_bytes';
    IF topic IS NULL OR topic = '' THEN
        RAISE EXCEPTION 'ferry: topic: must not be empty' USING ERRCODE = '22023';
    END IF;
    IF length(topic) > 249 THEN
        RAISE EXCEPTION 'ferry: topic: % characters is over Kafka''s limit of 249', length(topic)
            USING ERRCODE = '22023';
    END IF;
    IF topic !~ '^[A-Za-z0-9._-]+$' OR topic IN ('.', '..') THEN
        RAISE EXCEPTION 'ferry: topic: "%" has characters Kafka refuses (allowed: A-Z a-z 0-9 . _ -)',
            topic USING ERRCODE = '22023';
    END IF;
    IF key IS NULL THEN
        RAISE EXCEPTION 'ferry: key: must not be null (use '''' for no key)' USING ERRCODE = '22023';
    END IF;
    IF octet_length(key) > max_key THEN
        RAISE EXCEPTION 'ferry: key: % bytes is over the limit of % bytes', octet_length(key), max_key
            USING ERRCODE = '22023';
    END IF;
    IF payload IS NULL THEN
        RAISE EXCEPTION 'ferry: payload: must not be null' USING ERRCODE = '22023';
    END IF;
    IF octet_length(payload) > max_payload THEN
        RAISE EXCEPTION 'ferry: payload: % bytes is over the limit of % bytes',
            octet_length(payload), max_payload USING ERRCODE = '22023';
    END IF;
    IF headers IS NULL OR jsonb_typeof(headers) <> 'object' THEN
        RAISE EXCEPTION 'ferry: headers: must be a JSON object of string values'
            USING ERRCODE = '22023';
    END IF;
    SELECT h.key INTO bad_header FROM jsonb_each(headers) AS h
        WHERE jsonb_typeof(h.value) <> 'string' OR h.key = '' OR h.key LIKE 'ferry-%' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ferry: headers: "%" must be a non-empty name, not starting with "ferry-", with a string value (headers are a flat string map)',
            bad_header USING ERRCODE = '22023';
    END IF;
    IF octet_length(headers::text) > max_headers THEN
        RAISE EXCEPTION 'ferry: headers: % bytes is over the limit of % bytes',
            octet_length(headers::text), max_headers USING ERRCODE = '22023';
    END IF;
END
$fn$;

-- The SQL producer API: call it inside the business transaction.
CREATE FUNCTION @SCHEMA@.enqueue(topic text, key text, payload bytea,
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
    IF expires_after IS NOT NULL AND expires_after <= interval '0' THEN
        RAISE EXCEPTION 'ferry: expires_after: must be positive' USING ERRCODE = '22023';
    END IF;
    INSERT INTO @SCHEMA@.outbox (message_id, topic, key, payload, headers, created_at,
                                 available_at, expires_at)
    VALUES (id, topic, key, payload, headers, t, t + coalesce(deliver_after, interval '0'),
            t + expires_after);
    RETURN id;
END
$fn$;
