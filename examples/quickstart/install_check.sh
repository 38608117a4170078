#!/usr/bin/env bash
# Proves the installed package works for a service: installs Ferry from BUILD_DIR into a
# temporary prefix, builds examples/quickstart against it with find_package(ferry), runs it
# against FERRY_TEST_PG_DSN and checks that exactly the printed message id was committed.
set -euo pipefail
build_dir=$1
src_dir=$(cd "$(dirname "$0")" && pwd)
: "${FERRY_TEST_PG_DSN:?FERRY_TEST_PG_DSN is not set: run scripts/test (or tests/support/servers start)}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build_dir" --prefix "$work/prefix" >"$work/install.log"
test -f "$work/prefix/include/ferry/outbox/writer.hpp" || { echo "headers not installed"; exit 1; }
test -f "$work/prefix/lib/cmake/ferry/ferryConfig.cmake" || { echo "package config not installed"; exit 1; }
cmake -S "$src_dir" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" ||
    { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }

# A database of its own, so the fixed schema name "ferry" cannot collide with other tests.
db="install_check_$$_$RANDOM"
psql "$FERRY_TEST_PG_DSN" -qc "CREATE DATABASE $db" >/dev/null
dsn=${FERRY_TEST_PG_DSN%/*}/$db
cleanup_db() { psql "$FERRY_TEST_PG_DSN" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup_db EXIT

out=$("$work/build/quickstart" "$dsn" 1)
id=${out#enqueued }
[[ $id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] || { echo "unexpected output: $out"; exit 1; }
count=$(psql "$dsn" -Atc "SELECT count(*) FROM ferry.outbox WHERE message_id = '$id' AND key = 'order-42' AND topic = 'orders'")
total=$(psql "$dsn" -Atc "SELECT count(*) FROM ferry.outbox")
[ "$count" = 1 ] && [ "$total" = 1 ] || { echo "expected exactly one committed message $id, found $count of $total"; exit 1; }
echo "install check passed: find_package(ferry) + ferry::outbox, message $id committed"
