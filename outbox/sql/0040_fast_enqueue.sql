-- Ferry schema, version 40: enqueue at the cost of a plain INSERT (issue 15, ADR 0040).
-- @SCHEMA@ is replaced by the quoted schema name when the migration runs.
--
-- Version 1's enqueue() ran six statements per message (three reads of `settings`, a
-- jsonb_each query, the validator call and the INSERT) and a UUIDv7 built with numeric
-- arithmetic. This version keeps every error message word for word and:
--   * reads the limits once per transaction (a transaction-local setting caches them);
--   * checks a message with one boolean expression, and only when that expression says "bad"
--     runs the detailed checks that name the field (message_error);
--   * builds the UUIDv7 with float arithmetic and two set_bit calls on gen_random_uuid();
--   * adds enqueue_batch(), a set-based API: one INSERT ... SELECT over unnest of arrays.

-- UUIDv7 (RFC 9562): the 48-bit Unix millisecond timestamp over the first six bytes of a random
-- UUIDv4, whose version nibble 0100 becomes 0111 by setting bits 52 and 53 (set_bit numbers
-- bits from the least significant bit of each byte); the v4 variant bits (10) are already right.
-- Inlinable (one expression), so it costs no function call inside enqueue's statements.
CREATE OR REPLACE FUNCTION @SCHEMA@.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $fn$
    SELECT encode(set_bit(set_bit(
        overlay(uuid_send(gen_random_uuid())
                PLACING substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint)
                                  FROM 3)
                FROM 1 FOR 6),
        52, 1), 53, 1), 'hex')::uuid
$fn$;

-- Reads the three limits from `settings` and caches them for the rest of the transaction in the
-- transaction-local setting ferry.limits_<schema> as 'max_payload,max_key,max_headers'. A change
-- to `settings` applies from the next transaction on. A missing row means no limit, as before.
CREATE FUNCTION @SCHEMA@.load_limits() RETURNS text
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v text;
BEGIN
    SELECT format('%s,%s,%s',
                  coalesce(max(s.value) FILTER (WHERE s.name = 'max_payload_bytes'),
                           9223372036854775807),
                  coalesce(max(s.value) FILTER (WHERE s.name = 'max_key_bytes'),
                           9223372036854775807),
                  coalesce(max(s.value) FILTER (WHERE s.name = 'max_headers_bytes'),
                           9223372036854775807))
      INTO v FROM @SCHEMA@.settings AS s;
    PERFORM set_config('ferry.limits_' || btrim('@SCHEMA@', '"'), v, true);
    RETURN v;
END
$fn$;

-- The detailed checks, in version 1's order and with its messages: returns the first problem as
-- '<field>: <what is wrong>', or NULL when the message is valid. Called only on the error path.
CREATE FUNCTION @SCHEMA@.message_error(topic text, key text, payload bytea, headers jsonb,
                                       deliver_after interval, expires_after interval,
                                       max_payload bigint, max_key bigint, max_headers bigint)
RETURNS text LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    bad_header text;
BEGIN
    IF topic IS NULL OR topic = '' THEN
        RETURN 'topic: must not be empty';
    END IF;
    IF length(topic) > 249 THEN
        RETURN format('topic: %s characters is over Kafka''s limit of 249', length(topic));
    END IF;
    IF topic !~ '^[A-Za-z0-9._-]+$' OR topic IN ('.', '..') THEN
        RETURN format('topic: "%s" has characters Kafka refuses (allowed: A-Z a-z 0-9 . _ -)',
                      topic);
    END IF;
    IF key IS NULL THEN
        RETURN 'key: must not be null (use '''' for no key)';
    END IF;
    IF octet_length(key) > max_key THEN
        RETURN format('key: %s bytes is over the limit of %s bytes', octet_length(key), max_key);
    END IF;
    IF payload IS NULL THEN
        RETURN 'payload: must not be null';
    END IF;
    IF octet_length(payload) > max_payload THEN
        RETURN format('payload: %s bytes is over the limit of %s bytes', octet_length(payload),
                      max_payload);
    END IF;
    IF headers IS NULL OR jsonb_typeof(headers) <> 'object' THEN
        RETURN 'headers: must be a JSON object of string values';
    END IF;
    SELECT h.key INTO bad_header FROM jsonb_each(headers) AS h
        WHERE jsonb_typeof(h.value) <> 'string' OR h.key = '' OR h.key LIKE 'ferry-%' LIMIT 1;
    IF FOUND THEN
        RETURN format('headers: "%s" must be a non-empty name, not starting with "ferry-", with a string value (headers are a flat string map)',
                      bad_header);
    END IF;
    IF octet_length(headers::text) > max_headers THEN
        RETURN format('headers: %s bytes is over the limit of %s bytes',
                      octet_length(headers::text), max_headers);
    END IF;
    IF deliver_after IS NOT NULL AND deliver_after < interval '0' THEN
        RETURN 'deliver_after: must not be negative';
    END IF;
    IF expires_after IS NOT NULL AND expires_after <= interval '0' THEN
        RETURN 'expires_after: must be positive';
    END IF;
    RETURN NULL;
END
$fn$;

-- The fast check, a superset of the problems message_error() finds: false means the message is
-- valid; true means "run message_error()", which may still find nothing (a header value that
-- contains "ferry-" for example). One expression, inlined into the callers' statements, with no
-- executor run and no regular expression that counts (a bounded repetition like {1,249} costs
-- about 100 times more than this character-class test). `headers_text` is headers::text,
-- computed once by the caller.
CREATE FUNCTION @SCHEMA@.message_may_be_bad(topic text, key text, payload bytea, headers jsonb,
                                            headers_text text, deliver_after interval,
                                            expires_after interval, max_payload bigint,
                                            max_key bigint, max_headers bigint)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT topic IS NULL OR topic = '' OR length(topic) > 249 OR topic ~ '[^A-Za-z0-9._-]'
        OR topic IN ('.', '..')
        OR key IS NULL OR octet_length(key) > max_key
        OR payload IS NULL OR octet_length(payload) > max_payload
        OR headers IS NULL OR jsonb_typeof(headers) <> 'object'
        OR headers ? '' OR strpos(headers_text, '"ferry-') > 0
        OR jsonb_path_exists(headers, 'strict $.* ? (@.type() != "string")', '{}', true)
        OR octet_length(headers_text) > max_headers
        OR coalesce(deliver_after < interval '0', false)
        OR coalesce(expires_after <= interval '0', false)
$fn$;

-- Version 1's table constraint spelled {1,249}, which PostgreSQL's regular expression engine
-- runs about 100 times slower than a length test plus a character class: it was most of the
-- cost of every insert into the outbox. Same rule, cheaper expression. The same for half
-- messages.
ALTER TABLE @SCHEMA@.outbox DROP CONSTRAINT outbox_topic_check;
ALTER TABLE @SCHEMA@.outbox ADD CONSTRAINT outbox_topic_check CHECK (
    length(topic) BETWEEN 1 AND 249 AND topic !~ '[^A-Za-z0-9._-]' AND topic <> '.'
    AND topic <> '..');
ALTER TABLE @SCHEMA@.half_message DROP CONSTRAINT half_topic_check;
ALTER TABLE @SCHEMA@.half_message ADD CONSTRAINT half_topic_check CHECK (
    length(topic) BETWEEN 1 AND 249 AND topic !~ '[^A-Za-z0-9._-]' AND topic <> '.'
    AND topic <> '..');

-- Raises the error message_error() finds, if any (SQLSTATE 22023, 'ferry: <field>: ...'),
-- prefixed with `context` when it is not empty. Called only when message_may_be_bad() is true.
CREATE FUNCTION @SCHEMA@.check_message(context text, topic text, key text, payload bytea,
                                       headers jsonb, deliver_after interval,
                                       expires_after interval, max_payload bigint,
                                       max_key bigint, max_headers bigint)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    err text := @SCHEMA@.message_error(topic, key, payload, headers, deliver_after,
                                       expires_after, max_payload, max_key, max_headers);
BEGIN
    IF err IS NOT NULL THEN
        RAISE EXCEPTION 'ferry: %', context || err USING ERRCODE = '22023';
    END IF;
    RETURN true;
END
$fn$;

-- Version 1's validator (prepare() calls it), now on the cached limits and the fast check.
CREATE OR REPLACE FUNCTION @SCHEMA@.validate_message(topic text, key text, payload bytea,
                                                     headers jsonb)
RETURNS void LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    lim text := current_setting('ferry.limits_' || btrim('@SCHEMA@', '"'), true);
BEGIN
    IF lim IS NULL OR lim = '' THEN
        lim := @SCHEMA@.load_limits();
    END IF;
    IF @SCHEMA@.message_may_be_bad(topic, key, payload, headers, headers::text, NULL, NULL,
                                   split_part(lim, ',', 1)::bigint,
                                   split_part(lim, ',', 2)::bigint,
                                   split_part(lim, ',', 3)::bigint) THEN
        PERFORM @SCHEMA@.check_message('', topic, key, payload, headers, NULL, NULL,
                                       split_part(lim, ',', 1)::bigint,
                                       split_part(lim, ',', 2)::bigint,
                                       split_part(lim, ',', 3)::bigint);
    END IF;
END
$fn$;

-- The SQL producer API for one message: same signature, same errors as version 1. One INSERT
-- per call; everything else is expressions on the function's arguments.
CREATE OR REPLACE FUNCTION @SCHEMA@.enqueue(topic text, key text, payload bytea,
                                            headers jsonb DEFAULT '{}'::jsonb,
                                            deliver_after interval DEFAULT NULL,
                                            expires_after interval DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    lim text := current_setting('ferry.limits_' || btrim('@SCHEMA@', '"'), true);
    max_payload bigint;
    max_key bigint;
    max_headers bigint;
    id uuid;
    t timestamptz;
BEGIN
    IF lim IS NULL OR lim = '' THEN
        lim := @SCHEMA@.load_limits();
    END IF;
    max_payload := split_part(lim, ',', 1)::bigint;
    max_key := split_part(lim, ',', 2)::bigint;
    max_headers := split_part(lim, ',', 3)::bigint;
    IF @SCHEMA@.message_may_be_bad(topic, key, payload, headers, headers::text, deliver_after,
                                   expires_after, max_payload, max_key, max_headers) THEN
        PERFORM @SCHEMA@.check_message('', topic, key, payload, headers, deliver_after,
                                       expires_after, max_payload, max_key, max_headers);
    END IF;
    id := @SCHEMA@.uuid_v7();
    t := clock_timestamp();
    INSERT INTO @SCHEMA@.outbox (message_id, topic, key, payload, headers, created_at,
                                 available_at, expires_at)
    VALUES (id, topic, key, payload, headers, t, t + coalesce(deliver_after, interval '0'),
            t + expires_after);
    RETURN id;
END
$fn$;

-- The set-based SQL producer API: element i of every array is message i (arrays are numbered
-- from 1, as in SQL). topics, keys and payloads are required and equally long; headers,
-- deliver_after and expires_after may be NULL (no headers, no delay, no expiry for every
-- message) or arrays of the same length whose NULL elements mean the same for one message
-- (except headers, where a NULL element is an error, as in enqueue()). Validation is
-- enqueue()'s; the first invalid element is named in the error and nothing is written.
-- Returns the message ids in input order; the rows get increasing outbox ids in input order, so
-- messages of one key in one batch are published in array order.
CREATE FUNCTION @SCHEMA@.enqueue_batch(topics text[], keys text[], payloads bytea[],
                                       headers jsonb[] DEFAULT NULL,
                                       deliver_after interval[] DEFAULT NULL,
                                       expires_after interval[] DEFAULT NULL)
RETURNS uuid[] LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    lim text := current_setting('ferry.limits_' || btrim('@SCHEMA@', '"'), true);
    max_payload bigint;
    max_key bigint;
    max_headers bigint;
    n int;
    ids uuid[];
    t timestamptz;
    no_headers boolean := enqueue_batch.headers IS NULL;
BEGIN
    IF topics IS NULL THEN
        RAISE EXCEPTION 'ferry: enqueue_batch: topics: must not be null' USING ERRCODE = '22023';
    END IF;
    IF array_ndims(topics) > 1 THEN
        RAISE EXCEPTION 'ferry: enqueue_batch: topics: must be a one-dimensional array'
            USING ERRCODE = '22023';
    END IF;
    n := cardinality(topics);
    IF keys IS NULL OR cardinality(keys) <> n OR array_ndims(keys) > 1 THEN
        RAISE EXCEPTION 'ferry: enqueue_batch: keys: must be a one-dimensional array of % elements like topics (got %)',
            n, coalesce(cardinality(keys)::text, 'null') USING ERRCODE = '22023';
    END IF;
    IF payloads IS NULL OR cardinality(payloads) <> n OR array_ndims(payloads) > 1 THEN
        RAISE EXCEPTION 'ferry: enqueue_batch: payloads: must be a one-dimensional array of % elements like topics (got %)',
            n, coalesce(cardinality(payloads)::text, 'null') USING ERRCODE = '22023';
    END IF;
    IF enqueue_batch.headers IS NOT NULL
       AND (cardinality(enqueue_batch.headers) <> n OR array_ndims(enqueue_batch.headers) > 1) THEN
        RAISE EXCEPTION 'ferry: enqueue_batch: headers: must be NULL or a one-dimensional array of % elements like topics (got %)',
            n, cardinality(enqueue_batch.headers) USING ERRCODE = '22023';
    END IF;
    IF enqueue_batch.deliver_after IS NOT NULL
       AND (cardinality(enqueue_batch.deliver_after) <> n
            OR array_ndims(enqueue_batch.deliver_after) > 1) THEN
        RAISE EXCEPTION 'ferry: enqueue_batch: deliver_after: must be NULL or a one-dimensional array of % elements like topics (got %)',
            n, cardinality(enqueue_batch.deliver_after) USING ERRCODE = '22023';
    END IF;
    IF enqueue_batch.expires_after IS NOT NULL
       AND (cardinality(enqueue_batch.expires_after) <> n
            OR array_ndims(enqueue_batch.expires_after) > 1) THEN
        RAISE EXCEPTION 'ferry: enqueue_batch: expires_after: must be NULL or a one-dimensional array of % elements like topics (got %)',
            n, cardinality(enqueue_batch.expires_after) USING ERRCODE = '22023';
    END IF;
    IF n = 0 THEN
        RETURN '{}'::uuid[];
    END IF;
    IF lim IS NULL OR lim = '' THEN
        lim := @SCHEMA@.load_limits();
    END IF;
    max_payload := split_part(lim, ',', 1)::bigint;
    max_key := split_part(lim, ',', 2)::bigint;
    max_headers := split_part(lim, ',', 3)::bigint;
    -- ids[i] is the id of element i by construction (zipped by unnest below).
    ids := ARRAY(SELECT @SCHEMA@.uuid_v7() FROM generate_series(1, n));
    t := clock_timestamp();
    -- The scan yields elements in array order, so the first invalid element raises; the CASE
    -- keeps the detailed checks off the path of valid elements. ORDER BY n makes the outbox
    -- ids follow the array order.
    INSERT INTO @SCHEMA@.outbox (message_id, topic, key, payload, headers, created_at,
                                 available_at, expires_at)
    SELECT u.id, u.topic, u.key, u.payload, u.h, t, t + coalesce(u.delay, interval '0'),
           t + u.ttl
      FROM (SELECT y.*, y.h::text AS ht
              FROM (SELECT x.id, x.topic, x.key, x.payload,
                           CASE WHEN no_headers THEN '{}'::jsonb ELSE x.h END AS h, x.delay,
                           x.ttl, x.n
                      FROM unnest(ids, topics, keys, payloads, enqueue_batch.headers,
                                  enqueue_batch.deliver_after, enqueue_batch.expires_after)
                           WITH ORDINALITY AS x(id, topic, key, payload, h, delay, ttl, n)) AS y
            OFFSET 0) AS u  -- OFFSET 0: compute headers::text once per row, not per use
     WHERE CASE WHEN @SCHEMA@.message_may_be_bad(u.topic, u.key, u.payload, u.h, u.ht, u.delay,
                                                 u.ttl, max_payload, max_key, max_headers)
                THEN @SCHEMA@.check_message(format('enqueue_batch: element %s: ', u.n), u.topic,
                                            u.key, u.payload, u.h, u.delay, u.ttl, max_payload,
                                            max_key, max_headers)
                ELSE true END
     ORDER BY u.n;
    RETURN ids;
END
$fn$;
