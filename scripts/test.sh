#!/usr/bin/env bash
# Runs every test of pyhub_ai: `make test` (extra pytest arguments: `make test ARGS="-k codec"`),
# or directly `bash scripts/test.sh -k codec`.
#
# Idempotent: creates .venv and installs the project with its test dependencies when needed,
# installs the OS packages the browser tests need (chromium, fonts-noto-cjk) when missing, then
# runs the unit suite and the browser suite in two separate pytest processes (the browser
# suite starts live daphne servers in child processes; see /work/shared/TESTING-NOTES.md).
#
# Servers started for the tests (later: redis-server, PostgreSQL) are registered with
# `register_pid` / `on_exit` and stopped by the EXIT trap, also when a step fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"
CHROMIUM="/usr/bin/chromium"
ARTIFACTS="$ROOT/test-artifacts"
PYTEST_ARGS=("$@")

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31mERROR: %s\033[0m\n' "$*" >&2; exit 1; }

# ---- cleanup: everything started here is stopped on exit, by pid ---------------------------

CLEANUP_PIDS=()
CLEANUP_COMMANDS=()

# register_pid PID: terminate PID (then kill it) when the script exits.
register_pid() { CLEANUP_PIDS+=("$1"); }

# on_exit "command ...": run a command when the script exits (e.g. "pg_ctl -D dir stop").
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
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

ensure_os_packages() {
    local missing=()
    [ -x "$CHROMIUM" ] || missing+=(chromium)
    if command -v dpkg-query >/dev/null 2>&1; then
        package_installed fonts-noto-cjk || missing+=(fonts-noto-cjk)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    # Never skip the browser tests silently, in CI or locally.
    [ -x "$CHROMIUM" ] || die "$CHROMIUM is missing after the install attempt: the browser tests cannot run."
}

# ---- the tests -------------------------------------------------------------------------------

# run_pytest NAME MARKER: runs one suite; returns pytest's exit status (5: nothing collected).
run_pytest() {
    local name="$1" marker="$2" status=0
    log "pytest: $name suite (-m \"$marker\")"
    "$PY" -m pytest -m "$marker" ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"} || status=$?
    return "$status"
}

run_tests() {
    local unit=0 browser=0
    mkdir -p var "$ARTIFACTS/screenshots"
    run_pytest unit "not browser" || unit=$?
    run_pytest browser "browser" || browser=$?

    # Exit status 5 is "no tests collected": fine when ARGS selected only the other suite's
    # tests, but never when both suites collected nothing or when no ARGS were given.
    if [ "${#PYTEST_ARGS[@]}" -gt 0 ]; then
        if [ "$unit" -eq 5 ] && [ "$browser" -eq 5 ]; then
            die "No test matched: ${PYTEST_ARGS[*]}"
        fi
        [ "$unit" -eq 5 ] && unit=0
        [ "$browser" -eq 5 ] && browser=0
    fi
    if [ "$unit" -ne 0 ] || [ "$browser" -ne 0 ]; then
        die "Tests failed (unit suite: exit $unit, browser suite: exit $browser)."
    fi
    log "All tests passed."
}

main() {
    ensure_venv
    ensure_os_packages
    run_tests
}

main
