#!/usr/bin/env bash
# Enqueue cost and WAL volume of WAL mode's emit path against a plain INSERT into the outbox
# (ADR 0070). A quick comparison for the ADR, not the issue-13 bench (that belongs in
# scripts/bench relay once the relay has a WAL source).
#
#   wal/bench/emit_vs_insert.sh DSN [ROUNDS] [SECONDS] > results.jsonl
#
# DSN: a database where `ferryctl migrate` (or ferry::outbox::migrate) created schema "ferry"
# with migrations 0070-0071, on a server with wal_level=logical, with a pgoutput slot registered
# for the schema (ferry::wal::create_slot + register_slot, or pg_create_logical_replication_slot
# and INSERT INTO ferry.wal_slot): enqueue_wal refuses to emit without one. Modes, interleaved
# in every round:
#   insert / enqueue / enqueue_wal / emit_raw            one message per transaction (2 clients):
#                                                        dominated by the commit's WAL flush
#   insert_bulk / enqueue_bulk / enqueue_wal_bulk / emit_raw_bulk
#                                                        1000 messages per statement: the
#                                                        per-message CPU and WAL of each path
# insert = the C++ writer's INSERT; enqueue = the SQL API (validation + INSERT);
# enqueue_wal = the SQL API of WAL mode (validation + slot check + frame + emit);
# emit_raw = frame + pg_logical_emit_message, no validation (what a C++ writer that validated
# client-side would send). Payload 200 B, 1000 keys. Prints one JSON object per mode and round.
set -euo pipefail
dsn="$1"
rounds="${2:-3}"
seconds="${3:-5}"
pgbench="${PGBENCH:-/usr/lib/postgresql/15/bin/pgbench}"
dir="$(mktemp -d)"
trap 'rm -rf "${dir}"' EXIT

payload="convert_to(repeat('p', 200), 'UTF8')"
cat >"${dir}/insert.sql" <<SQL
INSERT INTO ferry.outbox (message_id, topic, key, payload, headers) VALUES (ferry.uuid_v7(), 'orders', 'order-' || (random()*1000)::int, ${payload}, '{}');
SQL
cat >"${dir}/enqueue.sql" <<SQL
SELECT ferry.enqueue('orders', 'order-' || (random()*1000)::int, ${payload});
SQL
cat >"${dir}/enqueue_wal.sql" <<SQL
SELECT ferry.enqueue_wal('orders', 'order-' || (random()*1000)::int, ${payload});
SQL
cat >"${dir}/emit_raw.sql" <<SQL
SELECT pg_logical_emit_message(true, 'ferry', ferry.wal_frame(ferry.uuid_v7(), 'orders', 'order-' || (random()*1000)::int, ${payload}, '{}', clock_timestamp(), NULL));
SQL
cat >"${dir}/insert_bulk.sql" <<SQL
INSERT INTO ferry.outbox (message_id, topic, key, payload, headers) SELECT ferry.uuid_v7(), 'orders', 'order-' || (i % 1000), ${payload}, '{}' FROM generate_series(1, 1000) AS i;
SQL
cat >"${dir}/enqueue_bulk.sql" <<SQL
SELECT count(ferry.enqueue('orders', 'order-' || (i % 1000), ${payload})) FROM generate_series(1, 1000) AS i;
SQL
cat >"${dir}/enqueue_wal_bulk.sql" <<SQL
SELECT count(ferry.enqueue_wal('orders', 'order-' || (i % 1000), ${payload})) FROM generate_series(1, 1000) AS i;
SQL
cat >"${dir}/emit_raw_bulk.sql" <<SQL
SELECT count(pg_logical_emit_message(true, 'ferry', ferry.wal_frame(ferry.uuid_v7(), 'orders', 'order-' || (i % 1000), ${payload}, '{}', clock_timestamp(), NULL))) FROM generate_series(1, 1000) AS i;
SQL

psql_q() { psql "${dsn}" -At -q -v ON_ERROR_STOP=1 -c "$1"; }
for r in $(seq "${rounds}"); do
    for m in insert enqueue enqueue_wal emit_raw insert_bulk enqueue_bulk enqueue_wal_bulk emit_raw_bulk; do
        psql_q "TRUNCATE ferry.outbox" >/dev/null
        psql_q "CHECKPOINT" >/dev/null
        lsn0="$(psql_q "SELECT pg_current_wal_insert_lsn()")"
        out="$("${pgbench}" -n -c 2 -j 2 -T "${seconds}" -f "${dir}/${m}.sql" "${dsn}" 2>&1)"
        lsn1="$(psql_q "SELECT pg_current_wal_insert_lsn()")"
        tps="$(grep -oP 'tps = \K[0-9.]+' <<<"${out}" | head -1)"
        tx="$(grep -oP 'number of transactions actually processed: \K[0-9]+' <<<"${out}")"
        per=1
        [[ ${m} == *_bulk ]] && per=1000
        wal="$(psql_q "SELECT pg_wal_lsn_diff('${lsn1}', '${lsn0}')")"
        rows="$(psql_q "SELECT count(*) FROM ferry.outbox")"
        printf '{"round":%d,"mode":"%s","msgs_per_s":%.0f,"transactions":%d,"wal_bytes_per_msg":%.0f,"outbox_rows":%d}\n' \
            "${r}" "${m}" "$(bc <<<"${tps} * ${per}")" "${tx}" "$(bc <<<"${wal} / (${tx} * ${per})")" "${rows}"
    done
done
