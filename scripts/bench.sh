#!/usr/bin/env bash
# Runs the benchmarks of pyhub_ai: `make bench` (extra arguments: `make bench ARGS="--turns 10"`),
# or directly `bash scripts/bench.sh --help`.
#
# Creates .venv with the demo's dependencies when needed, installs the PostgreSQL server when
# missing, starts a throwaway PostgreSQL cluster on a free port of 127.0.0.1 (exported as
# PYHUB_AI_BENCH_POSTGRES_URL), then runs `python -m bench` (SQLite and PostgreSQL; the table
# goes to bench/results/latest.md). The cluster is stopped and removed on exit, also on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="$ROOT/.venv/bin/python"

# shellcheck source=scripts/servers.sh
source "$ROOT/scripts/servers.sh"   # log, die, on_exit, ensure_server_packages, start_postgres
install_cleanup_traps

make --no-print-directory -s install-demo   # .venv with the demo's dependencies, when needed
[ -x "$PY" ] || die "$PY is missing: \`make install-demo\` failed."

ensure_server_packages postgres
start_postgres pyhub_ai_bench
export PYHUB_AI_BENCH_POSTGRES_URL="$POSTGRES_SERVER_URL"

# The command recorded in bench/results/latest.md.
if [ -n "${MAKELEVEL:-}" ]; then
    export PYHUB_AI_BENCH_COMMAND="make bench${*:+ ARGS=\"$*\"}"
else
    export PYHUB_AI_BENCH_COMMAND="bash scripts/bench.sh${*:+ $*}"
fi
"$PY" -m bench "$@"
