#!/usr/bin/env bash
# Runs every test of pyhub_ai: `make test` (extra pytest arguments: `make test ARGS="-k codec"`),
# or directly `bash scripts/test.sh -k codec`.
#
# Idempotent: creates .venv and installs the project with its test dependencies when needed,
# installs the OS packages the tests need (chromium, fonts-noto-cjk, redis-server, the
# PostgreSQL 15 server) when missing, starts a throwaway redis-server and PostgreSQL cluster on
# free ports of 127.0.0.1 (exported as PYHUB_AI_TEST_REDIS_URL and PYHUB_AI_TEST_POSTGRES_URL),
# then runs three pytest processes:
#
#   1. the unit suite on SQLite with the in-memory channel layer;
#   2. the unit suite again on PostgreSQL with the Redis channel layer, plus the multi-process
#      tests (two live daphne processes sharing that database and Redis, one of them killed);
#   3. the browser suite (live daphne servers in child processes) on SQLite, and the README
#      followed in blank projects (a wheel of this checkout in a fresh virtual environment).
#
# It exits non-zero if any of them fails (see the "Testing" section of the README). The servers are
# registered with `register_pid` / `on_exit` (scripts/servers.sh) and stopped by the EXIT trap,
# also when a step fails or on Ctrl+C; a server that cannot be installed or started is an error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"
CHROMIUM="/usr/bin/chromium"
ARTIFACTS="$ROOT/test-artifacts"
PYTEST_ARGS=("$@")

# shellcheck source=scripts/servers.sh
source "$ROOT/scripts/servers.sh"   # log, die, register_pid, on_exit, apt_install, start_redis, start_postgres
install_cleanup_traps

# ---- Python environment ----------------------------------------------------------------------

ensure_venv() {
    if [ ! -x "$PY" ]; then
        log "Creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    # Reinstall only when pyproject.toml changed since the last successful install.
    local stamp="$VENV/.pyhub-ai-test-deps" want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    log "Installing pyhub_ai with its test dependencies into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
    "$PY" -m pip install --quiet --disable-pip-version-check -e . --group test
    echo "$want" > "$stamp"
}

# ---- OS packages -----------------------------------------------------------------------------

ensure_os_packages() {
    local missing=()
    [ -x "$CHROMIUM" ] || missing+=(chromium)
    if command -v dpkg-query >/dev/null 2>&1; then
        package_installed fonts-noto-cjk || missing+=(fonts-noto-cjk)
    fi
    mapfile -t -O "${#missing[@]}" missing < <(missing_server_packages)   # redis-server, PostgreSQL
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    # Never skip the browser or the PostgreSQL + Redis tests silently, in CI or locally.
    [ -x "$CHROMIUM" ] || die "$CHROMIUM is missing after the install attempt: the browser tests cannot run."
    ensure_server_packages
}

# ---- servers ---------------------------------------------------------------------------------

start_servers() {
    start_redis
    start_postgres pyhub_ai
    export PYHUB_AI_TEST_REDIS_URL="$REDIS_SERVER_URL"
    export PYHUB_AI_TEST_POSTGRES_URL="$POSTGRES_SERVER_URL"
}

# ---- the tests -------------------------------------------------------------------------------

banner() {
    printf '\n\033[1;36m======== %s ========\033[0m\n' "$*" >&2
}

# run_pytest TITLE MARKER [VAR=VALUE...]: runs one suite with the environment VAR=VALUE...;
# returns pytest's exit status (5: nothing collected).
run_pytest() {
    local title="$1" marker="$2" status=0 started
    shift 2
    banner "$title (-m \"$marker\")"
    started=$SECONDS
    env "$@" "$PY" -m pytest -m "$marker" ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"} || status=$?
    log "$title: exit $status in $((SECONDS - started)) s"
    return "$status"
}

run_tests() {
    local names=() statuses=() status failed=0 all_empty=1 i
    # SQLite and the in-memory channel layer, whatever the shell or a .env file says
    # (mysite/settings.py never lets .env override a variable that is set, even to "").
    local sqlite=("DATABASE_URL=sqlite:///$ROOT/db.sqlite3" "REDIS_URL=")
    local postgres=("DATABASE_URL=$PYHUB_AI_TEST_POSTGRES_URL" "REDIS_URL=$PYHUB_AI_TEST_REDIS_URL")
    mkdir -p var "$ARTIFACTS/screenshots"

    # The multiprocess tests need PostgreSQL and Redis: only the second run selects them.
    status=0; run_pytest "unit suite: SQLite + in-memory layer" "not browser and not multiprocess and not blank_project" "${sqlite[@]}" || status=$?
    names+=("unit suite, SQLite + in-memory layer"); statuses+=("$status")
    status=0; run_pytest "unit + multi-process suite: PostgreSQL + Redis layer" "not browser and not blank_project" "${postgres[@]}" || status=$?
    names+=("unit + multi-process suite, PostgreSQL + Redis layer"); statuses+=("$status")
    status=0; run_pytest "browser + blank-project suite: SQLite + in-memory layer" "browser or blank_project" "${sqlite[@]}" || status=$?
    names+=("browser suite, SQLite + in-memory layer"); statuses+=("$status")

    # Exit status 5 is "no tests collected": fine when ARGS selected only some suites' tests,
    # but never when every suite collected nothing or when no ARGS were given.
    for i in "${!statuses[@]}"; do
        if [ "${statuses[$i]}" -ne 5 ]; then all_empty=0; fi
    done
    if [ "${#PYTEST_ARGS[@]}" -gt 0 ]; then
        if [ "$all_empty" -eq 1 ]; then
            die "No test matched: ${PYTEST_ARGS[*]}"
        fi
        for i in "${!statuses[@]}"; do
            if [ "${statuses[$i]}" -eq 5 ]; then statuses[$i]=0; fi
        done
    fi
    for i in "${!statuses[@]}"; do
        if [ "${statuses[$i]}" -ne 0 ]; then
            printf '\033[31m  FAILED: %s (exit %s)\033[0m\n' "${names[$i]}" "${statuses[$i]}" >&2
            failed=1
        fi
    done
    [ "$failed" -eq 0 ] || die "Tests failed."
    log "All tests passed (${SECONDS} s)."
}

main() {
    ensure_venv
    ensure_os_packages
    start_servers
    run_tests
}

main
