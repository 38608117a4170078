-- Ferry schema, version 104: the outbox's own checks at no per-statement cost (issue 15, ADR 0040
-- amendment "Domains instead of table checks"). @SCHEMA@ is replaced by the quoted schema name
-- when the migration runs.
--
-- PostgreSQL compiles a table's CHECK constraints again for every INSERT statement (it reads
-- their stored expression back and plans it), which was about a quarter of the server time of
-- a one-row INSERT into the outbox: every per-row ferry.enqueue() call and every C++ writer
-- statement paid it. A domain's CHECK is compiled once per session and cached, so the same
-- rules now live on the column types: a topic Kafka accepts (1 to 249 of A-Z a-z 0-9 . _ -, not
-- "." or ".."), and headers that are a JSON object. A direct INSERT that breaks them still fails
-- with SQLSTATE 23514 (check_violation), naming the domain's constraint.
--
-- No table is rewritten: the columns first change to domains without constraints (the same
-- storage, so only the catalog changes), then each domain gets its constraint, which checks the
-- rows already there with one scan. The table constraints they replace held the same rules, so
-- that scan finds nothing.

CREATE DOMAIN @SCHEMA@.topic_name AS text;
COMMENT ON DOMAIN @SCHEMA@.topic_name IS
    'A Kafka topic name: 1 to 249 characters of A-Z a-z 0-9 . _ -, not "." or "..".';
CREATE DOMAIN @SCHEMA@.header_map AS jsonb;
COMMENT ON DOMAIN @SCHEMA@.header_map IS
    'Message headers: a JSON object (enqueue() also requires string values, names not starting with "ferry-").';

ALTER TABLE @SCHEMA@.outbox
    DROP CONSTRAINT outbox_topic_check,
    DROP CONSTRAINT outbox_headers_check,
    ALTER COLUMN topic TYPE @SCHEMA@.topic_name,
    ALTER COLUMN headers TYPE @SCHEMA@.header_map;
ALTER TABLE @SCHEMA@.half_message
    DROP CONSTRAINT half_topic_check,
    ALTER COLUMN topic TYPE @SCHEMA@.topic_name;

ALTER DOMAIN @SCHEMA@.topic_name ADD CONSTRAINT topic_name_check CHECK (
    length(VALUE) BETWEEN 1 AND 249 AND VALUE !~ '[^A-Za-z0-9._-]' AND VALUE <> '.'
    AND VALUE <> '..');
ALTER DOMAIN @SCHEMA@.header_map ADD CONSTRAINT header_map_check CHECK (
    jsonb_typeof(VALUE) = 'object');
