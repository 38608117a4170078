# shellcheck shell=bash
# Shared helpers for scripts/* and tests/support/servers. Source it; it defines functions only.

# Absolute path of the repository root (this file lives in scripts/lib/).
FERRY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export FERRY_ROOT

ferry_log() {
    printf '%s: %s\n' "${FERRY_SCRIPT_NAME:-ferry}" "$*" >&2
}

ferry_die() {
    printf '%s: error: %s\n' "${FERRY_SCRIPT_NAME:-ferry}" "$*" >&2
    exit 1
}

ferry_is_root() {
    [[ "$(id -u)" -eq 0 ]]
}

# ferry_nproc: parallel jobs for builds, capped by FERRY_JOBS when set.
ferry_nproc() {
    if [[ -n "${FERRY_JOBS:-}" ]]; then
        printf '%s\n' "${FERRY_JOBS}"
    else
        nproc 2>/dev/null || echo 2
    fi
}
