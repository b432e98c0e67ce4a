# Shell functions shared by scripts/test.sh and scripts/bench.sh: logging, cleanup on exit,
# OS packages, and throwaway redis-server / PostgreSQL servers on free ports of 127.0.0.1.
#
# Source it (after setting ROOT to the repository root), then call `install_cleanup_traps`:
#
#     source "$ROOT/scripts/servers.sh"
#     install_cleanup_traps
#     ensure_server_packages           # redis-server and the PostgreSQL server (or one: `postgres`)
#     start_redis                      # sets REDIS_SERVER_URL    (redis://127.0.0.1:PORT/0)
#     start_postgres pyhub_ai          # sets POSTGRES_SERVER_URL (postgres://postgres@127.0.0.1:PORT/pyhub_ai)
#
# Every server is stopped by the EXIT trap (also when a step fails or on Ctrl+C), by its pid,
# and its files are removed. A server that cannot be installed or started is an error (never
# a skip), in CI and locally.
# shellcheck shell=bash

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31mERROR: %s\033[0m\n' "$*" >&2; exit 1; }

# ---- cleanup: everything started here is stopped on exit, by pid ---------------------------

CLEANUP_PIDS=()
CLEANUP_COMMANDS=()

# register_pid PID: terminate PID (then kill it) when the script exits.
register_pid() { CLEANUP_PIDS+=("$1"); }

# on_exit "command ...": run a command when the script exits (e.g. "stop_postgres dir").
# Commands run in reverse order of registration, before the registered pids are stopped.
on_exit() { CLEANUP_COMMANDS+=("$1"); }

stop_pid() {
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$? i
    set +e
    for (( i=${#CLEANUP_COMMANDS[@]}-1; i>=0; i-- )); do
        eval "${CLEANUP_COMMANDS[$i]}" >/dev/null 2>&1
    done
    for (( i=${#CLEANUP_PIDS[@]}-1; i>=0; i-- )); do
        stop_pid "${CLEANUP_PIDS[$i]}"
    done
    exit "$status"
}

install_cleanup_traps() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ---- OS packages -----------------------------------------------------------------------------

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        die "Missing OS packages ($*) and no apt-get to install them: install them by hand."
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

package_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

REDIS_SERVER_BIN="/usr/bin/redis-server"

# The bin directory of the PostgreSQL server: version 15 when installed, else the newest one.
postgres_bin_dir() {
    local dir
    if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
        echo /usr/lib/postgresql/15/bin
        return 0
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

# missing_server_packages [redis] [postgres]: prints the apt packages of the missing servers
# (both when no argument is given).
missing_server_packages() {
    local want=("$@")
    [ "${#want[@]}" -gt 0 ] || want=(redis postgres)
    if [[ " ${want[*]} " == *" redis "* ]] && [ ! -x "$REDIS_SERVER_BIN" ]; then
        echo redis-server
    fi
    if [[ " ${want[*]} " == *" postgres "* ]] && ! postgres_bin_dir >/dev/null; then
        if command -v apt-cache >/dev/null 2>&1 && apt-cache show postgresql-15 >/dev/null 2>&1; then
            echo postgresql-15
        else
            echo postgresql
        fi
    fi
}

# ensure_server_packages [redis] [postgres]: installs the servers' packages when missing, and
# fails when they are still missing afterwards (both when no argument is given).
ensure_server_packages() {
    local want=("$@") missing
    [ "${#want[@]}" -gt 0 ] || want=(redis postgres)
    mapfile -t missing < <(missing_server_packages "${want[@]}")
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    if [[ " ${want[*]} " == *" redis "* ]] && [ ! -x "$REDIS_SERVER_BIN" ]; then
        die "$REDIS_SERVER_BIN is missing after the install attempt."
    fi
    if [[ " ${want[*]} " == *" postgres "* ]] && ! postgres_bin_dir >/dev/null; then
        die "No PostgreSQL server (/usr/lib/postgresql/*/bin/initdb) after the install attempt."
    fi
}

# ---- servers ---------------------------------------------------------------------------------

# free_port: prints a TCP port of 127.0.0.1 that nothing listens on right now.
free_port() {
    "${PY:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# redis_ping PORT: whether a redis server answers PING on 127.0.0.1:PORT.
redis_ping() {
    local port="$1" reply=""
    { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 1 reply <&3 || true
    exec 3>&- 3<&-
    [[ "$reply" == "+PONG"* ]]
}

# start_redis: a redis-server (no persistence) on a free port, stopped on exit.
# Sets REDIS_SERVER_URL and REDIS_SERVER_PID.
start_redis() {
    local dir="$ROOT/var/redis-$$" port attempt i
    mkdir -p "$dir"
    on_exit "rm -rf '$dir'"
    for attempt in 1 2 3; do
        port="$(free_port)"
        "$REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
            --dir "$dir" --logfile "$dir/redis.log" --daemonize no </dev/null >/dev/null 2>&1 &
        REDIS_SERVER_PID=$!
        on_exit "stop_pid $REDIS_SERVER_PID"   # runs before the rm -rf above (reverse order)
        for i in $(seq 1 100); do
            if redis_ping "$port"; then
                REDIS_SERVER_URL="redis://127.0.0.1:$port/0"
                log "redis-server $($REDIS_SERVER_BIN --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$port (pid $REDIS_SERVER_PID)"
                return 0
            fi
            kill -0 "$REDIS_SERVER_PID" 2>/dev/null || break
            sleep 0.05
        done
        stop_pid "$REDIS_SERVER_PID"   # lost the port to another process, or too slow: retry
    done
    die "redis-server did not start. Its log ($dir/redis.log):
$(tail -n 30 "$dir/redis.log" 2>/dev/null)"
}

# stop_postgres DIR: stops the cluster of DIR at once (no checkpoint) and removes DIR.
stop_postgres() {
    local dir="$1" bin pid=""
    bin="$(postgres_bin_dir)"
    [ -f "$dir/data/postmaster.pid" ] && pid="$(head -n 1 "$dir/data/postmaster.pid")"
    if [ -d "$dir/data" ]; then
        as_postgres_user "$bin/pg_ctl" -D "$dir/data" stop -m immediate -w -t 10 || true
    fi
    [ -n "$pid" ] && stop_pid "$pid"
    rm -rf "$dir"
}

# as_postgres_user COMMAND...: as root, runs COMMAND as the postgres user (initdb and the
# server refuse to run as root); otherwise as the current user.
as_postgres_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# start_postgres DBNAME: a throwaway PostgreSQL cluster in var/pg-<pid>/ (trust auth, user
# postgres, fsync off) listening on a free port of 127.0.0.1; stopped and removed on exit.
# Sets POSTGRES_SERVER_URL (postgres://postgres@127.0.0.1:PORT/DBNAME) and POSTGRES_VERSION.
# The database DBNAME is not created (pytest-django creates its own test database).
start_postgres() {
    local dbname="${1:-postgres}" bin dir port attempt
    bin="$(postgres_bin_dir)" || die "No PostgreSQL server binaries (/usr/lib/postgresql/*/bin)."
    dir="$ROOT/var/pg-$$"
    # A unix socket path is limited to ~107 bytes: use /tmp when the checkout path is long.
    if [ "${#dir}" -gt 80 ]; then
        dir="$(mktemp -d /tmp/pyhub-ai-pg-XXXXXX)"
    fi
    rm -rf "$dir"
    mkdir -p "$dir/sock"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "There is no postgres user (install postgresql-15)."
        chown -R postgres: "$dir"
    fi
    on_exit "stop_postgres '$dir'"
    if ! as_postgres_user "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1; then
        die "initdb failed ($dir/initdb.log):
$(tail -n 30 "$dir/initdb.log")"
    fi
    for attempt in 1 2 3; do
        port="$(free_port)"
        if as_postgres_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
                -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
                start >/dev/null 2>&1; then
            POSTGRES_SERVER_URL="postgres://postgres@127.0.0.1:$port/$dbname"
            POSTGRES_VERSION="$("$bin/postgres" --version | awk '{print $3}')"
            log "PostgreSQL $POSTGRES_VERSION on 127.0.0.1:$port (data: $dir/data, pid $(head -n 1 "$dir/data/postmaster.pid"))"
            return 0
        fi
        as_postgres_user "$bin/pg_ctl" -D "$dir/data" stop -m immediate >/dev/null 2>&1 || true
    done
    die "PostgreSQL did not start ($dir/server.log):
$(tail -n 30 "$dir/server.log" 2>/dev/null)"
}
