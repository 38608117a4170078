# shellcheck shell=bash
# Starts the test servers for the rest of the calling script and stops them when it exits,
# however it exits (failure, Ctrl-C, SIGTERM). Used by scripts/test and scripts/bench so both
# run against the same kind of servers. Source after common.sh.

FERRY_SERVERS_ENVFILE=""
FERRY_SERVERS_MORE_ENVFILES=()

ferry_servers_stop() {
    local envfile
    for envfile in "${FERRY_SERVERS_MORE_ENVFILES[@]}"; do
        "${FERRY_ROOT}/tests/support/servers" stop "${envfile}" ||
            ferry_log "warning: stopping the test servers of ${envfile} failed (see above)"
    done
    FERRY_SERVERS_MORE_ENVFILES=()
    if [[ -n "${FERRY_SERVERS_ENVFILE}" ]]; then
        "${FERRY_ROOT}/tests/support/servers" stop "${FERRY_SERVERS_ENVFILE}" ||
            ferry_log "warning: stopping the test servers failed (see above)"
        FERRY_SERVERS_ENVFILE=""
    fi
}

# ferry_servers_start ENVFILE BUILD_DIR: starts the servers (or adopts FERRY_TEST_* ones already
# set), sources ENVFILE into this shell and arranges for them to stop on exit.
ferry_servers_start() {
    local envfile="$1" build_dir="$2"
    FERRY_SERVERS_ENVFILE="${envfile}"
    # Traps first, so an interrupted start still cleans up. INT/TERM become exits so that the
    # EXIT trap runs; the exit codes are the conventional 128+signal.
    trap 'ferry_servers_stop' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    export FERRY_DEV_KAFKA_BIN="${FERRY_DEV_KAFKA_BIN:-${build_dir}/bin/ferry-dev-kafka}"
    "${FERRY_ROOT}/tests/support/servers" start "${envfile}"
    # shellcheck disable=SC1090
    source "${envfile}"
}

# ferry_servers_start_more ENVFILE...: after ferry_servers_start, starts one more set of servers
# per ENVFILE (fresh ones: the FERRY_TEST_* addresses of the first set are not passed on), and
# stops them with the first set. Nothing is sourced: the caller decides who uses which set.
ferry_servers_start_more() {
    local envfile
    for envfile in "$@"; do
        FERRY_SERVERS_MORE_ENVFILES+=("${envfile}")
        env -u FERRY_TEST_PG_DSN -u FERRY_TEST_REDIS_URL -u FERRY_TEST_KAFKA_BROKERS \
            "${FERRY_ROOT}/tests/support/servers" start "${envfile}"
    done
}
