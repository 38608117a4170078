#!/usr/bin/env bash
# CI's share of the campaign: scripts/chaos on one fixed seed (short producing phase, 10 s held
# transaction) plus every negative control, against the FERRY_TEST_* servers of scripts/test.
# Passes only when the campaign line is all zeros and every control was caught.
#
#   chaos_campaign_faulttest.sh BUILD_DIR
set -euo pipefail
build_dir=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
FERRY_BUILD_DIR="$build_dir" FERRY_CHAOS_PRODUCE_S=12 FERRY_CHAOS_HOLD_S=10 \
    "$root/scripts/chaos" --skip-build --seeds 1 --seed "${FERRY_CHAOS_CI_SEED:-3}" --messages 800 \
    --json "$build_dir/chaos/ci-results.json" >"$out" 2>&1
rc=$?
set -e
cat "$out"
line=$(grep -E '^chaos: seeds=' "$out" | tail -n 1 || true)
[[ -n $line ]] || { echo "FAIL: no campaign line"; exit 1; }
[[ $line == *" lost=0 duplicate_effects=0 order_violations=0 phantoms=0 unsettled=0 controls_caught=5/5" ]] ||
    { echo "FAIL: $line"; exit 1; }
[[ $rc -eq 0 ]] || { echo "FAIL: scripts/chaos exited $rc"; exit 1; }
echo "PASS: $line"
