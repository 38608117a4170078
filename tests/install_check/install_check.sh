#!/usr/bin/env bash
# Package components (issue 14): installs Ferry from BUILD_DIR into a temporary prefix, then
#  1. configures, builds and links tests/install_check/outbox_only with
#     find_package(ferry COMPONENTS outbox) and checks the package found libpqxx (and
#     prometheus-cpp, which ferry::common links) and none of librdkafka, hiredis, yaml-cpp,
#     libcurl, cpp-httplib, spdlog, nlohmann_json;
#  2. negative control: asking for the consumer component finds librdkafka;
#  3. runs the service against FERRY_TEST_PG_DSN: it migrates the outbox module only and
#     enqueues one message, which must be the only row, in a schema without consumer tables.
set -euo pipefail
build_dir=$1
src_dir=$(cd "$(dirname "$0")" && pwd)
: "${FERRY_TEST_PG_DSN:?FERRY_TEST_PG_DSN is not set: run scripts/test (or tests/support/servers start)}"
work=$(mktemp -d)
schema="install_outbox_$$_$RANDOM"
cleanup() {
    psql "$FERRY_TEST_PG_DSN" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "install_check_components: $*"; exit 1; }

cmake --install "$build_dir" --prefix "$work/prefix" >"$work/install.log"
for m in outbox relay wal reconcile consumer; do
    ls "$work/prefix/share/ferry/sql/$m/"*.sql >/dev/null 2>&1 || fail "share/ferry/sql/$m/ not installed"
done

cmake -S "$src_dir/outbox_only" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
    -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configure"; }
found=$(sort "$work/build/ferry_found_packages.txt" | tr '\n' ' ')
[ "$found" = "pqxx prometheus " ] || fail "COMPONENTS outbox found: $found(expected: pqxx prometheus)"
cmake --build "$work/build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build"; }

cmake -S "$src_dir/outbox_only" -B "$work/control" -DCMAKE_PREFIX_PATH="$work/prefix" \
    -DFERRY_EXPECT_COMPONENT=consumer >"$work/control.log" 2>&1 || { cat "$work/control.log"; fail "configure (consumer)"; }
grep -qx rdkafka "$work/control/ferry_found_packages.txt" ||
    fail "negative control: COMPONENTS consumer did not find librdkafka ($(tr '\n' ' ' <"$work/control/ferry_found_packages.txt"))"

out=$("$work/build/outbox_only" "$FERRY_TEST_PG_DSN" "$schema")
id=${out#enqueued }
[[ $id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] || fail "unexpected output: $out"
count=$(psql "$FERRY_TEST_PG_DSN" -Atc "SELECT count(*) FROM $schema.outbox WHERE message_id = '$id'")
total=$(psql "$FERRY_TEST_PG_DSN" -Atc "SELECT count(*) FROM $schema.outbox")
[ "$count" = 1 ] && [ "$total" = 1 ] || fail "expected exactly message $id, found $count of $total"
inbox=$(psql "$FERRY_TEST_PG_DSN" -Atc "SELECT to_regclass('$schema.inbox') IS NULL AND to_regclass('$schema.published') IS NULL")
[ "$inbox" = t ] || fail "migrate --only outbox created consumer or relay tables"
echo "install check passed: find_package(ferry COMPONENTS outbox) found only pqxx and prometheus, linked, message $id committed"
