# shellcheck shell=bash
# The Debian bookworm packages Ferry needs to build and to run its test servers: the single list
# that scripts/build installs from. Source after common.sh.

FERRY_DEBIAN_PACKAGES=(
    # toolchain
    g++ cmake ninja-build pkg-config git ca-certificates clang-format
    # libraries Ferry links
    libpqxx-dev libpq-dev libhiredis-dev librdkafka-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
    libcli11-dev nlohmann-json3-dev libcpp-httplib-dev libcurl4-openssl-dev prometheus-cpp-dev
    # tests and benchmarks; clang and its runtime libraries build the libFuzzer targets;
    # prometheus: promtool checks the /metrics text
    libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev prometheus
    # throw-away servers for tests/support/servers (postgresql-15 includes the contrib
    # modules on bookworm; postgresql-contrib is only a meta package pointing at it)
    postgresql-15 redis-server
    # fault injection and process tools used by the harness and fault tests
    faketime procps iproute2 passwd util-linux
    # scripts/chaos --parallel merges the shards' JSON
    jq
)

# Prints the packages from the list that are not installed, one per line.
ferry_missing_packages() {
    local pkg status
    for pkg in "${FERRY_DEBIAN_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${db:Status-Abbrev}' "${pkg}" 2>/dev/null || true)"
        if [[ "${status}" != ii* ]]; then
            printf '%s\n' "${pkg}"
        fi
    done
}

# Installs whatever is missing. As root: apt-get (update only when something is missing). As
# anyone else: print the command to run and fail, since nothing else would build.
ferry_ensure_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        ferry_die "dpkg-query not found: scripts/build supports Debian bookworm; install the" \
            "packages listed in scripts/lib/packages.sh by hand on other systems"
    fi
    local -a missing
    mapfile -t missing < <(ferry_missing_packages)
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi
    local cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    if ! ferry_is_root; then
        ferry_die "missing Debian packages: ${missing[*]}
run as root:
    ${cmd}"
    fi
    ferry_log "installing missing Debian packages: ${missing[*]}"
    if [[ " ${missing[*]} " == *" postgresql-15 "* && ! -d /etc/postgresql/15/main ]]; then
        # The tests start their own throw-away PostgreSQL; the package's default cluster on
        # port 5432 would only use memory. createcluster.conf includes this directory.
        mkdir -p /etc/postgresql-common/createcluster.d
        printf 'create_main_cluster = false\n' >/etc/postgresql-common/createcluster.d/ferry.conf
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}
