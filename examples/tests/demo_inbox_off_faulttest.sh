#!/usr/bin/env bash
# Negative control for scripts/demo: its summary line is computed from database state, so with the
# PostgreSQL inbox switched off (Redis-only dedup, and the demo's Redis FLUSHDB before its
# duplicate storm) the same demo must REPORT the duplicate effects it causes and exit non-zero.
# A summary kept by counters could not fail this way.
#
#   demo_inbox_off_faulttest.sh BUILD_DIR      (reuses BUILD_DIR and the FERRY_TEST_* servers)
set -euo pipefail
build_dir=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT

set +e
# tee, not a redirect: when ctest's timeout kills the run, what the demo printed so far shows.
FERRY_DEMO_SKIP_BUILD=1 FERRY_DEMO_DEDUP=redis FERRY_DEMO_ORDERS=300 FERRY_BUILD_DIR="$build_dir" \
    "$root/scripts/demo" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
line=$(grep -E '^demo: orders=' "$out" | tail -n 1 || true)
[[ -n $line ]] || { echo "FAIL: no summary line"; exit 1; }
value() { sed -E "s/.* $1=([0-9]+).*/\\1/" <<<"$line"; }
dup=$(value duplicate_effects)
lost=$(value lost)
orders=$(sed -E 's/^demo: orders=([0-9]+).*/\1/' <<<"$line")
[[ $rc -ne 0 ]] || { echo "FAIL: the demo exited 0 with the inbox off"; exit 1; }
((dup > 0)) || { echo "FAIL: duplicate_effects=$dup with the inbox off; expected > 0"; exit 1; }
((orders > 0)) || { echo "FAIL: no orders"; exit 1; }
((lost == 0)) || { echo "FAIL: lost=$lost (only duplicates were expected)"; exit 1; }
grep -qE 'units ordered=([0-9]+) units decremented=' "$out" || { echo "FAIL: no stock line"; exit 1; }
# The progress line printed when the demo settled shows the effects the database holds: the
# same counts as the summary (nothing is published after it settles; a re-drive by the
# reconciliation can only add duplicate effects, so duplicate_effects may grow, effects not).
settled=$(grep -E '^demo: \[ *[0-9]+s\] settled: ' "$out" | tail -n 1 || true)
[[ -n $settled ]] || { echo "FAIL: the demo did not settle (no 'settled:' progress line)"; exit 1; }
s_effects=$(sed -E 's/.* effects=([0-9]+).*/\1/' <<<"$settled")
s_dup=$(sed -E 's/.* duplicate_effects=([0-9]+).*/\1/' <<<"$settled")
[[ $s_effects == "$(value effects)" ]] ||
    { echo "FAIL: settled line effects=$s_effects, summary effects=$(value effects)"; exit 1; }
((s_dup > 0 && s_dup <= dup)) ||
    { echo "FAIL: settled line duplicate_effects=$s_dup, summary duplicate_effects=$dup"; exit 1; }
echo "PASS: with the inbox off the demo reported duplicate_effects=$dup and exited $rc"
