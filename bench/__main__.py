"""``make bench`` (scripts/bench.sh, which starts a throwaway PostgreSQL and Redis) or ``python -m bench``.

Runs the benchmarks and writes bench/results/latest.md:

* ``history``: server time of one turn vs. stored thread length, SQLite and PostgreSQL
  (bench/history_scaling.py; its section: bench/results/history.md);
* ``production``: the production model path — the app's consumer streaming ``ChatOpenAI``
  replies from a local OpenAI-compatible HTTP server, before and after the fast path, against
  bare-consumer baselines (minimal HTTP client, openai SDK, ``ChatOpenAI.astream``), and
  scale-out on PostgreSQL + Redis (bench/prod_load.py; its section: production.md, the profile:
  profile-production.md). It comes first in latest.md: it is the path production runs;
* ``calls``: Python function calls per turn on the same path (the floor, the floor plus our
  storage, the app), counted in-process: unlike CPU time, the same from run to run
  (bench/turn_calls.py; its section: bench/results/turn_calls.md);
* ``load``: concurrent websocket conversations on real daphne processes, SQLite + in-memory
  layer, PostgreSQL + Redis, one and two processes, vs. a bare-consumer baseline, with an
  in-process fake model: the lower bound (bench/ws_load.py; its section: bench/results/load.md,
  the py-spy profile: profile.md);
* ``checkpointer``: LangGraph checkpointers, ``pyhub_ai.checkpoint.DjangoSaver`` vs. the official
  SqliteSaver and PostgresSaver, put/get_tuple and bytes per turn at 10, 1,000 and 10,000
  messages (bench/checkpointer.py; its section: bench/results/checkpointer.md);
* ``ledger``: CPU per turn with the usage ledger on, against the same run without it (and with a
  budget), SQLite and PostgreSQL (bench/ledger.py; its section: bench/results/ledger.md);
* ``search``: searching one user's messages among 1,000,000 stored ones, SQLite (FTS5) and
  PostgreSQL (GIN) (bench/search.py; its section: bench/results/search.md);
* ``toolloop``: the same scripted turns (a plain reply, one and three tool calls) through the
  hand-written tool loop (``AgentMixin``) and ``create_agent`` (``GraphMixin``): CPU per turn,
  frames, stored rows, checkpoint bytes, SQLite (bench/tool_loop.py; its section:
  bench/results/tool_loop.md).

``--only history``, ``--only production``, ``--only calls``, ``--only load``, ``--only checkpointer``, ``--only ledger``, ``--only search`` or ``--only toolloop`` runs one of them; latest.md is then
assembled from the fresh section and the last ones written of the others
(``--production-quick``: one configuration of the production benchmark). Options of the history benchmark are
passed through (``--db``, ``--sizes``, ``--turns``, ...); the load benchmark's options start with
``--load-`` (``--load-scenarios``, ``--load-sizes``, ``--load-turns``, ``--load-budget``,
``--load-no-profile``).
"""
import argparse
import importlib
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
HISTORY_RESULTS = RESULTS / "history.md"
LATEST = RESULTS / "latest.md"


def assemble(failed: dict[str, str]) -> None:
    """latest.md = history.md + load.md (+ a link to profile.md); a section whose benchmark
    failed in this run is kept from its last run, under a warning."""
    from bench.prod_load import PRODUCTION_PROFILE, PRODUCTION_RESULTS
    from bench.checkpointer import RESULTS as CHECKPOINTER_RESULTS
    from bench.ledger import RESULTS as LEDGER_RESULTS
    from bench.search import RESULTS as SEARCH_RESULTS
    from bench.tool_loop import RESULTS as TOOL_LOOP_RESULTS
    from bench.turn_calls import RESULTS as TURN_CALLS_RESULTS
    from bench.ws_load import LOAD_RESULTS, PROFILE_RESULTS

    parts = []
    sections = (
        ("production", PRODUCTION_RESULTS), ("calls", TURN_CALLS_RESULTS), ("history", HISTORY_RESULTS), ("load", LOAD_RESULTS),
        ("checkpointer", CHECKPOINTER_RESULTS), ("ledger", LEDGER_RESULTS), ("search", SEARCH_RESULTS),
        ("toolloop", TOOL_LOOP_RESULTS),
    )  # fmt: skip
    for name, path in sections:
        if not path.exists():
            continue
        text = path.read_text().rstrip()
        if name in failed:
            text = f"> **The {name} benchmark FAILED in the last run ({failed[name]}); this section is from an earlier run.**\n\n{text}"
        parts.append(text)
    if PRODUCTION_PROFILE.exists():
        parts.append(PRODUCTION_PROFILE.read_text().rstrip())
    if PROFILE_RESULTS.exists():
        parts.append(
            "The hot-path profile of the load benchmark (py-spy, top functions by own time): "
            "[bench/results/profile.md](profile.md)."
        )
    LATEST.write_text("\n\n---\n\n".join(parts) + "\n")
    print(f"Wrote {LATEST} ({', '.join(p.name for _, p in sections if p.exists())})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0], add_help=False,
        epilog="Other options go to the history benchmark (listed below).",
    )  # fmt: skip
    parser.add_argument("--only", choices=["history", "production", "calls", "load", "checkpointer", "ledger", "search", "toolloop"], help="run one benchmark (default: all)")
    parser.add_argument("--production-quick", action="store_true", help="one configuration of the production benchmark")
    parser.add_argument("--load-scenarios", help="sqlite, postgres, two (default: all)")
    parser.add_argument("--load-sizes", help="N of the SQLite load scenario (default: 100,500,1000)")
    parser.add_argument("--load-turns", help="turns per conversation (default: 3)")
    parser.add_argument("--load-budget", help="seconds for the load runs (default: 480)")
    parser.add_argument("--load-no-profile", action="store_true", help="skip the py-spy run")
    parser.add_argument("-h", "--help", action="store_true")
    args, history_argv = parser.parse_known_args(argv)
    if args.help:
        parser.print_help()
        print("\nOptions of the history benchmark (bench/history_scaling.py):\n")
        from bench.history_scaling import main as history_main

        return history_main(["--help"])  # exits
    if args.only in ("load", "production", "checkpointer", "ledger", "search", "toolloop") and history_argv:
        parser.error(f"unrecognized arguments for --only {args.only}: {' '.join(history_argv)}")

    status = 0
    failed: dict[str, str] = {}
    if args.only in (None, "history"):
        from bench.history_scaling import main as history_main

        if not any(arg == "--output" or arg.startswith("--output=") for arg in history_argv):
            history_argv += ["--output", str(HISTORY_RESULTS)]
        try:
            status = history_main(history_argv) or status
        except Exception as exc:  # noqa: BLE001 - the load benchmark still runs; the exit status says it failed
            print(f"\nThe history-scaling benchmark FAILED ({exc!r}); its section in latest.md is the last one written.\n", flush=True)
            failed["history"] = type(exc).__name__
            status = 1
    if args.only in (None, "production"):
        from bench.prod_load import main as production_main

        try:
            status = production_main(["--quick"] if args.production_quick else []) or status
        except Exception as exc:  # noqa: BLE001
            print(f"\nThe production-path benchmark FAILED ({exc!r}).\n", flush=True)
            failed["production"] = type(exc).__name__
            status = 1
    if args.only in (None, "load"):
        from bench.ws_load import main as load_main

        load_argv = []
        for option, value in (
            ("--scenarios", args.load_scenarios), ("--sizes", args.load_sizes),
            ("--turns", args.load_turns), ("--budget", args.load_budget),
        ):  # fmt: skip
            if value is not None:
                load_argv += [option, value]
        if args.load_no_profile:
            load_argv.append("--no-profile")
        try:
            status = load_main(load_argv) or status
        except Exception as exc:  # noqa: BLE001
            print(f"\nThe websocket load benchmark FAILED ({exc!r}).\n", flush=True)
            failed["load"] = type(exc).__name__
            status = 1
    for name, module, title in (
        ("calls", "turn_calls", "calls-per-turn"), ("checkpointer", "checkpointer", "checkpointer"), ("ledger", "ledger", "usage-ledger"),
        ("search", "search", "search"), ("toolloop", "tool_loop", "tool-loop"),
    ):  # fmt: skip
        if args.only not in (None, name):
            continue
        try:
            status = importlib.import_module(f"bench.{module}").main([]) or status
        except Exception as exc:  # noqa: BLE001
            print(f"\nThe {title} benchmark FAILED ({exc!r}).\n", flush=True)
            failed[name] = type(exc).__name__
            status = 1
    assemble(failed)
    return status


sys.exit(main(sys.argv[1:]))
