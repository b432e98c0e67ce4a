"""Benchmark: the production model path — websocket turns answered by ``ChatOpenAI`` over HTTP.

``python -m bench.prod_load`` (part of ``make bench``; ``--quick`` for one configuration;
``--ab`` to compare a change: only the floor, the floor plus our storage and the app,
alternating, about 45 s, nothing written to bench/results).
A local OpenAI-compatible server (bench/model_server.py, its own process) streams every reply
as server-sent events, one per token, ``PACE`` seconds apart; daphne serves
bench/prod_asgi.py: the app's consumer configured as a user configures it (``OPENAI_BASE_URL``
and a key), and bare-consumer baselines asking the same server for the same prompt (a
minimal asyncio HTTP client, the openai SDK, ``ChatOpenAI.astream``; and the minimal client
with every turn stored by pyhub_ai's history calls, the floor plus our storage); like a deployment's
ASGI module (docs/deployment.md), bench/prod_asgi.py freezes the objects loaded at start-up out
of the garbage collector's full collections. The app runs twice:
``fast`` (the default, ``PYHUB_AI_LLM_FAST_STREAM`` on) and ``standard`` (off: ``astream``,
the path before this change), each on its own daphne process in the same run.

Per configuration (reply of ``tokens`` = 10 or 200 tokens, prompt window of 2 or 50 stored
messages) and consumer: ``N`` websockets connect (the app's each to its own conversation,
seeded with the window), warm up, then run turns back to back for ``phase`` seconds (a turn
starts only before the end of the phase; every started turn finishes). Measured: daphne's CPU
time over the phase divided by the turns answered (CPU per reply; per token = / tokens), and
turns/s. The worker process (Django configured, throwaway database: bench.ws_load._run_group)
seeds, starts and stops the servers; the runner renders bench/results/production.md
(bench/prod_report.py). The ``postgres`` group repeats the fast path on PostgreSQL + Redis with
one and two daphne processes (clients split over them). All traffic stays on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import ws_load

PACE = 0.005  # seconds between two tokens of the model server (200 tokens/s per stream)
CONSUMERS = ("http", "stored", "sdk", "langchain", "standard", "fast")  # baselines, then the app before/after
APP_CONSUMERS = ("standard", "fast")
#: Consumers that store every turn in seeded threads: the app's, and the floor plus our storage.
STORING_CONSUMERS = ("stored", *APP_CONSUMERS)
#: The consumers every repetition runs: the floor, the floor plus our storage, the app (after).
REPEATED = ("http", "stored", "fast")
#: Runs of each of ``REPEATED`` with ``--ab`` (one configuration, nothing else).
AB_REPEATS = 3
#: Runs of each of ``REPEATED`` per configuration, one after the other (floor, stored, after,
#: floor, ...): each configuration reports the smallest CPU per reply of each. The machine's
#: other work only adds CPU (caches, frequency), so the smallest run is the best estimate; one
#: run of each gave ratios 0.3 apart between two otherwise equal configurations, and two runs
#: of the same code still 1.41x and 1.73x the floor (2026-11-30). With three, one
#: configuration's smallest runs still moved by 0.2x the floor between two ``make bench``
#: (the floor plus our storage at 200 tokens, window 50: 8.0 ms at 10:09 UTC; 8.2, 8.8 and
#: 11.0 ms in an A/B at 10:56): with five, each has more chances of a quiet minute.
REPEATS = 5
PHASE = 6.0  # seconds of turns per run
QUICK_PHASE = 3.0
N = 50  # concurrent conversations per run
SCALE_N = 100  # per PostgreSQL + Redis run (split over the processes)
SCALE_WINDOW = 50
PROFILE_SECONDS = 8
PRODUCTION_RESULTS = ws_load.RESULTS_DIR / "production.md"
PRODUCTION_PROFILE = ws_load.RESULTS_DIR / "profile-production.md"


def ab_plan(tokens: int, window: int, keep_alive: bool = False) -> dict[str, list[dict]]:
    """``--ab``: the floor, the floor plus our storage and the app's fast path, alternating,
    ``AB_REPEATS`` times each, on SQLite (the report's headline takes each one's smallest run,
    as for ``make bench``). ``keep_alive``: the model server keeps connections alive and sends
    chunked bodies, as api.openai.com does (the floor then keeps its connection too)."""
    return {"sqlite": [
        {"name": f"{consumer}-{tokens}t-w{window}-{repeat + 1}", "consumer": consumer, "tokens": tokens, "window": window,
         "n": N, "processes": 1, "phase": QUICK_PHASE, "keep_alive": keep_alive}
        for repeat in range(AB_REPEATS) for consumer in REPEATED
    ]}  # fmt: skip


def plan(scenarios: list[str], quick: bool, profile: bool, quick_tokens: int = 200) -> dict[str, list[dict]]:
    """The runs of each worker group (``sqlite``: the comparison; ``postgres``: scale-out)."""
    phase = QUICK_PHASE if quick else PHASE
    configs = [(quick_tokens, 50)] if quick else [(tokens, window) for tokens in (10, 200) for window in (2, 50)]
    groups: dict[str, list[dict]] = {}
    if "sqlite" in scenarios:
        repeats = 1 if quick else REPEATS
        runs = [
            {"name": f"{consumer}-{tokens}t-w{window}" + (f"-{repeat + 1}" if repeat else ""), "consumer": consumer,
             "tokens": tokens, "window": window, "n": N, "processes": 1, "phase": phase}
            for tokens, window in configs
            for repeat in range(repeats)
            for consumer in (CONSUMERS + (("http_every",) if (tokens, window) == (200, 50) else ()) if repeat == 0 else REPEATED)
        ]  # fmt: skip
        if profile and ws_load.py_spy_path():
            tokens = quick_tokens if quick else 200
            runs.append({"name": f"profile-fast-{tokens}t-w50", "consumer": "fast", "tokens": tokens, "window": 50, "n": N,
                         "processes": 1, "phase": PROFILE_SECONDS + 1.0, "profile": str(ws_load.VAR / "profile-production.txt")})  # fmt: skip
        elif profile:
            print("py-spy is not installed (`.venv/bin/pip install py-spy`): no profile of the production path.", flush=True)
        groups["sqlite"] = runs
    if "postgres" in scenarios:
        groups["postgres"] = [
            {"name": f"pg-{consumer}-{tokens}t-{processes}p", "consumer": consumer, "tokens": tokens, "window": SCALE_WINDOW,
             "n": SCALE_N, "processes": processes, "phase": phase}
            for tokens in ((200,) if quick else (10, 200)) for processes in (1, 2) for consumer in ("fast",) + (() if quick else ("standard",))
        ]  # fmt: skip
    return groups


# ---- the worker (Django configured) ------------------------------------------------------------


class ModelServer:
    """bench/model_server.py in a child process; ``stop()`` ends it (by its pid)."""

    def __init__(self, tokens: int, keep_alive: bool = False) -> None:
        command = [sys.executable, "-m", "bench.model_server", "--tokens", str(tokens), "--pace", str(PACE)]
        command += ["--keep-alive"] if keep_alive else []
        self.process = subprocess.Popen(command, cwd=ws_load.ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.port = int(self.process.stdout.readline())
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    stop = ws_load.Daphne.stop  # terminate, then kill after 10 s (uses self.process only)


def seed_threads(label: str, count: int, window: int) -> list[int]:
    """``count`` owner-less conversations, each with the visitor thread ``ProdChatConsumer``
    uses holding ``history_messages(window)``."""
    from bench.prod_asgi import history_messages
    from pyhub_ai.history import DjangoChatMessageHistory

    pks = ws_load.seed_conversations(label, count)
    messages = history_messages(window)
    for pk in pks:
        DjangoChatMessageHistory(conversation=pk, visitor_key=f"bench-{pk}").add_messages(messages)
    return pks


async def drive(run: dict, uris: list[str], warm_uris: list[str], pids: list[int]) -> dict:
    for uri in warm_uris:
        await ws_load.warm_up(uri)
    connections, _ = await ws_load.connect_all(uris, ws_load.RAMP_RATE)
    connected = [c for c in connections if c.ws is not None]
    profiler = ws_load.Profiler(pids[0], Path(run["profile"]), PROFILE_SECONDS) if run.get("profile") else None
    stats = ws_load.TurnStats()
    rng = random.Random(1234)
    cpu_before, started = [ws_load.cpu_seconds(pid) for pid in pids], time.perf_counter()
    loop_cpu_before = [ws_load.main_thread_cpu_seconds(pid) for pid in pids]
    await asyncio.gather(*(
        ws_load.run_turns(c, 100_000, run["tokens"] * PACE, started + run["phase"], stats, rng) for c in connected
    ))  # fmt: skip
    finished = time.perf_counter()
    cpu = sum(ws_load.cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before))
    loop_cpu = sum(ws_load.main_thread_cpu_seconds(pid) - before for pid, before in zip(pids, loop_cpu_before))
    profile_error = profiler.wait(PROFILE_SECONDS + 30) if profiler else None
    await ws_load.close_all(connections)
    done, wall = len(stats.latencies), finished - started
    return {
        "connected": len(connected),
        "turns_done": done,
        "turn_errors": dict(stats.errors),
        "short_streams": stats.short_streams,
        "turns_per_s": done / ((stats.last_end or finished) - started) if done else 0.0,
        "latency_ms": ws_load._ms_stats(stats.latencies),
        "daphne_cpu_s": cpu,
        "daphne_pct": 100 * cpu / wall,
        "cpu_ms_per_reply": 1000 * cpu / done if done else None,
        "other_threads_cpu_ms_per_reply": 1000 * (cpu - loop_cpu) / done if done else None,
        "turn_ids": stats.turn_ids,
        "profile_error": profile_error,
    }


def run_one(run: dict, env: dict[str, str]) -> dict:
    from django.db import connection

    label = f"prod {run['name']} {os.getpid()}"
    app = run["consumer"] in STORING_CONSUMERS
    if app:
        restore_migrated_sqlite()
        pks = seed_threads(label, run["n"] + run["processes"], run["window"])
        route = "stored" if run["consumer"] == "stored" else "chat"
        paths = [f"ws/prod/{route}/{run['window']}/{pk}/" for pk in pks]
        paths, warm_paths = paths[run["processes"]:], paths[: run["processes"]]
    else:
        paths = [f"ws/prod/bare/{run['consumer']}/{run['window']}/"] * (run["n"] + run["processes"])
        paths, warm_paths = paths[run["processes"]:], paths[: run["processes"]]
    connection.close()
    model_server = ModelServer(run["tokens"], run.get("keep_alive", False))
    servers: list[ws_load.Daphne] = []
    try:
        run_env = {**env, "PYHUB_AI_BENCH_OPENAI_BASE_URL": model_server.base_url,
                   "PYHUB_AI_BENCH_FAST_STREAM": "0" if run["consumer"] == "standard" else "1"}  # fmt: skip
        for index in range(run["processes"]):
            servers.append(ws_load.Daphne(run_env, f"{run['name']}-{index}", app="bench.prod_asgi:application"))
        uris = [f"ws://127.0.0.1:{servers[i % len(servers)].port}/{p}" for i, p in enumerate(paths)]
        warm_uris = [f"ws://127.0.0.1:{s.port}/{p}" for s, p in zip(servers, warm_paths)]
        result = {**run, **asyncio.run(drive(run, uris, warm_uris, [s.pid for s in servers]))}
        result["daphne_log_errors"] = sum(s.log_tail(200).count("Traceback") for s in servers)
    finally:
        for server in servers:
            server.stop()
        model_server.stop()
    turn_ids = result.pop("turn_ids")
    if app:
        result["answered_turns_stored"] = ws_load.count_stored_turns(turn_ids)
    print(
        f"  [{run['name']}] {result['turns_done']} turns, {result['turns_per_s']:.1f} turns/s, daphne CPU "
        f"{ws_load._fmt(result['cpu_ms_per_reply'], 1)} ms/reply ({result['daphne_pct']:.0f}%; other threads {ws_load._fmt(result['other_threads_cpu_ms_per_reply'], 1)} ms), errors {result['turn_errors'] or 0}",
        flush=True,
    )
    return result


def keep_migrated_sqlite() -> None:
    """Copy the freshly migrated SQLite database aside, for ``restore_migrated_sqlite()``."""
    from django.db import connection

    if connection.vendor == "sqlite":
        connection.close()  # the last connection: its write-ahead log is written back into the file
        shutil.copyfile(connection.settings_dict["NAME"], f"{connection.settings_dict['NAME']}.migrated")


def restore_migrated_sqlite() -> None:
    """Put back the database as it was migrated (SQLite; nothing else is open on it between two
    runs), so each storing run starts on the same one: the runs before a run grew it (a
    10-token run stores about 6,000 turns), and on a grown database the same turn cost the
    database thread about 0.4 ms more (py-spy, the app after the floor plus our storage, then
    in the other order, 2026-11-30), which the consumer that ran later paid."""
    from django.db import connection

    if connection.vendor != "sqlite":
        return
    connection.close()
    path = connection.settings_dict["NAME"]
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(f"{path}.migrated", path)


def run_worker(group: str, runs: list[dict]) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    ws_load.raise_nofile_limit()
    call_command("migrate", verbosity=0, interactive=False)
    keep_migrated_sqlite()
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "bench.prod_settings", "PYTHONPATH": str(ws_load.ROOT),
        "PYTHONUNBUFFERED": "1", "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false",
        "OPENAI_API_KEY": "", "OPENAI_BASE_URL": "",
    }  # fmt: skip
    results = []
    for run in runs:
        if time.time() + ws_load.RUN_ESTIMATE / 2 > run["deadline"]:
            results.append({**run, "skipped": "time budget used up"})
            continue
        try:
            results.append(run_one(run, env))
        except Exception as exc:  # noqa: BLE001 - one failed run is reported, the others still run
            print(f"  [{run['name']}] FAILED: {exc!r}", flush=True)
            results.append({**run, "failed": repr(exc)})
    return {"group": group, "vendor": connection.vendor, "runs": results}


# ---- the runner --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prod_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="sqlite,postgres", help="sqlite (the comparison), postgres (scale-out); default: both")
    parser.add_argument("--quick", action="store_true", help="one configuration (200 tokens, window 50), shorter runs")
    parser.add_argument("--tokens", type=int, default=200, help="with --quick or --ab: tokens per reply (default 200)")
    parser.add_argument("--ab", action="store_true", help=f"only the floor, the floor plus our storage and the app, alternating, {AB_REPEATS} runs each; prints, writes nothing")
    parser.add_argument("--window", type=int, default=50, help="with --ab: stored messages in the prompt (default 50)")
    parser.add_argument("--keep-alive", action="store_true", help="with --ab: the model server keeps connections alive (chunked bodies), as api.openai.com")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy run")
    parser.add_argument("--budget", type=float, default=1500, help="seconds for all runs; runs that do not fit are skipped (default 1500)")
    parser.add_argument("--worker", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        Path(args.json).write_text(json.dumps(run_worker(args.worker, json.loads(Path(args.spec).read_text()))))
        return 0

    from bench.prod_report import render, render_profile

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if "postgres" in scenarios and not (os.environ.get("PYHUB_AI_BENCH_POSTGRES_URL") and os.environ.get("PYHUB_AI_BENCH_REDIS_URL")):
        print("No PostgreSQL + Redis (run `make bench`, which starts them): the scale-out runs are skipped.", flush=True)
        scenarios.remove("postgres")
    command = os.environ.get("PYHUB_AI_BENCH_COMMAND") or "python -m bench.prod_load " + " ".join(argv if argv is not None else sys.argv[1:])
    ws_load.raise_nofile_limit()
    deadline, started, groups = time.time() + args.budget, time.perf_counter(), []
    planned = ab_plan(args.tokens, args.window, args.keep_alive) if args.ab else plan(scenarios, args.quick, not args.no_profile, args.tokens)
    for group, runs in planned.items():
        print(f"==> production path, {group}: {len(runs)} runs", flush=True)
        try:
            groups.append(ws_load._run_group(group, runs, deadline, module="bench.prod_load", settings="bench.prod_settings"))
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            print(f"  the {group} worker FAILED: {exc!r}", flush=True)
            groups.append({"group": group, "vendor": group, "runs": [{**r, "failed": f"worker: {exc!r}"[:300]} for r in runs]})
    report = render(groups, command, time.perf_counter() - started, PACE)
    print("\n" + report)
    if args.ab:
        return 0
    PRODUCTION_RESULTS.write_text(report)
    print(f"Wrote {PRODUCTION_RESULTS}")
    for run in (r for g in groups for r in g["runs"] if r.get("profile")):
        raw = Path(run["profile"])
        if "failed" in run or "skipped" in run or run.get("profile_error") or not raw.exists():
            print(f"The profile run failed: {run.get('failed') or run.get('profile_error') or 'no output'}")
            continue
        kept = ws_load.RESULTS_DIR / f"{raw.name}.gz"
        with open(raw, "rb") as source, gzip.open(kept, "wb") as target:
            shutil.copyfileobj(source, target)
        PRODUCTION_PROFILE.write_text(render_profile(run, raw, kept.name))
        print(f"Wrote {PRODUCTION_PROFILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
