#!/usr/bin/env bash
# Runs the benchmarks of pyhub_ai: `make bench` (extra arguments: `make bench ARGS="--turns 10"`),
# or directly `bash scripts/bench.sh --help`.
#
# Creates .venv with the demo's dependencies when needed (plus py-spy, for the load benchmark's
# profile), installs the PostgreSQL and Redis servers when missing, starts a throwaway PostgreSQL
# cluster and redis-server on free ports of 127.0.0.1 (exported as PYHUB_AI_BENCH_POSTGRES_URL
# and PYHUB_AI_BENCH_REDIS_URL), then runs `python -m bench`: the history-scaling benchmark
# (SQLite and PostgreSQL), then the websocket load benchmark (SQLite + in-memory layer,
# PostgreSQL + Redis; one and two daphne processes). The tables go to bench/results/latest.md
# (sections: history.md, load.md; profile.md). `make bench ARGS="--only load"` runs one of them.
# The servers are stopped and removed on exit, also on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="$ROOT/.venv/bin/python"

# shellcheck source=scripts/servers.sh
source "$ROOT/scripts/servers.sh"   # log, die, on_exit, ensure_server_packages, start_postgres, start_redis
install_cleanup_traps

make --no-print-directory -s install-demo   # .venv with the demo's dependencies, when needed
[ -x "$PY" ] || die "$PY is missing: \`make install-demo\` failed."

# py-spy samples a daphne process for the load benchmark's profile (bench/results/profile.md);
# without it that one run is skipped.
if [ ! -x "$ROOT/.venv/bin/py-spy" ]; then
    log "pip install py-spy"
    "$PY" -m pip install --quiet --disable-pip-version-check py-spy || log "py-spy could not be installed: no profile."
fi

# The checkpointer benchmark (bench/checkpointer.py) compares DjangoSaver with LangGraph's own savers.
if ! "$PY" -c "import langgraph.checkpoint.sqlite, langgraph.checkpoint.postgres" 2>/dev/null; then
    log "pip install pyhub_ai[langgraph] langgraph-checkpoint-sqlite langgraph-checkpoint-postgres"
    "$PY" -m pip install --quiet --disable-pip-version-check -e ".[langgraph]" \
        "langgraph-checkpoint-sqlite>=3.1" "langgraph-checkpoint-postgres>=3.2"
fi

ensure_server_packages
start_postgres pyhub_ai_bench
export PYHUB_AI_BENCH_POSTGRES_URL="$POSTGRES_SERVER_URL"
start_redis
export PYHUB_AI_BENCH_REDIS_URL="$REDIS_SERVER_URL"

# The command recorded in bench/results/latest.md.
if [ -n "${MAKELEVEL:-}" ]; then
    export PYHUB_AI_BENCH_COMMAND="make bench${*:+ ARGS=\"$*\"}"
else
    export PYHUB_AI_BENCH_COMMAND="bash scripts/bench.sh${*:+ $*}"
fi
"$PY" -m bench "$@"
