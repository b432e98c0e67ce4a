"""Benchmark: Python function calls per chat turn, on the production model path.

    python -m bench.turn_calls            (part of ``make bench``; ``--only calls``)

Why: CPU time per reply on the benchmark machine (a 2-core VM) moves by 10–20% between runs of
the same code (bench/results/production.md lists every run), so a change that saves 5% of a
turn cannot be told from noise there. The number of Python function calls a turn makes is the
same from run to run (to within a call or two), and on this path most of a turn's CPU is spent
in Python: it tells whether a change removed work, and where the work is.

What runs: the consumers of bench/prod_asgi.py, each in a fresh process with its own SQLite
database, driven in-process through channels' ``WebsocketCommunicator`` (no daphne), turn after
turn on one websocket, against bench/model_server.py over HTTP (its own process, as in
bench/prod_load.py), served both ways: one request per connection, the body ending with the
connection (as bench/prod_load.py's server), and kept-alive connections with chunked bodies
(as api.openai.com serves). The consumers: the floor (``http``: a minimal asyncio HTTP client, nothing stored), the
floor plus our storage (``stored``) and the app's consumer (``fast``, the default path). After
warm-up turns, ``sys.setprofile`` counts every Python call on the event loop's thread and,
separately, on the database thread (asgiref's, where every query runs). Writes
bench/results/turn_calls.md.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "turn_calls.md"
KINDS = {
    "http": "the floor (minimal asyncio HTTP client, nothing stored)",
    "stored": "the floor plus our storage",
    "fast": "pyhub_ai (the app's consumer, default fast path)",
}
WARM_UP_TURNS = 10
#: How the model server serves: (keep-alive, the section's title).
SERVINGS = (
    (False, "One request per connection, the body ending with it (the production benchmark's server)"),
    (True, "Kept-alive connections, chunked bodies (as api.openai.com serves)"),
)
#: Modules shown in the breakdown of the app's calls above the floor plus our storage.
TOP_MODULES = 15


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.turn_calls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", default="10,200", help="reply lengths in tokens (default 10,200)")
    parser.add_argument("--window", type=int, default=2, help="stored messages in the prompt (default 2)")
    parser.add_argument("--turns", type=int, default=10, help="counted turns per consumer (default 10)")
    parser.add_argument("--worker", nargs=5, metavar=("KIND", "TOKENS", "WINDOW", "TURNS", "KEEP_ALIVE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, tokens, window, turns, keep_alive = args.worker
        print(json.dumps(count_calls(kind, int(tokens), int(window), int(turns), keep_alive == "1")))
        return 0
    started = time.perf_counter()
    lengths = [int(t) for t in args.tokens.split(",")]
    sections = []
    for keep_alive, framing in SERVINGS:
        counts = {(kind, tokens): _run_worker(kind, tokens, args.window, args.turns, keep_alive) for tokens in lengths for kind in KINDS}
        sections.append(section(framing, counts, lengths))
    RESULTS.write_text(render(sections, args, time.perf_counter() - started))
    print(RESULTS.read_text(), flush=True)
    print(f"Wrote {RESULTS}", flush=True)
    return 0


def _run_worker(kind: str, tokens: int, window: int, turns: int, keep_alive: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.turn_calls", "--worker", kind, str(tokens), str(window), str(turns), "1" if keep_alive else "0"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{kind}, {tokens} tokens: the worker failed:\n{done.stderr[-3000:]}")
    print(f"  [{kind} {tokens}t{' keep-alive' if keep_alive else ''}] done", flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def count_calls(kind: str, tokens: int, window: int, turns: int, keep_alive: bool) -> dict[str, Any]:
    """In this (fresh) process: the calls per turn of ``kind``'s consumer (see the module
    docstring); ``{"loop": n, "db": n, "modules": {module: n}}``, per turn."""
    folder = tempfile.mkdtemp(prefix="turn-calls-")
    database = os.path.join(folder, "db.sqlite3")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.prod_settings", PYHUB_AI_BENCH_LOAD_DB="sqlite", PYHUB_AI_BENCH_LOAD_SQLITE_PATH=database,
        OPENAI_API_KEY="", OPENAI_BASE_URL="",
    )  # fmt: skip
    from bench.prod_load import ModelServer

    server = ModelServer(tokens, keep_alive)
    os.environ["PYHUB_AI_BENCH_OPENAI_BASE_URL"] = server.base_url
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        settings.PYHUB_AI_FRAME_FLOOD_LIMIT = 10**6  # one socket sends turn after turn
        call_command("migrate", verbosity=0)
        from bench.prod_load import seed_threads

        pk = seed_threads("turn calls", 1, window)[0]
        connection.close()
        path = {"http": f"/ws/prod/bare/http/{window}/", "stored": f"/ws/prod/stored/{window}/{pk}/"}.get(kind, f"/ws/prod/chat/{window}/{pk}/")
        return asyncio.run(_count(path, turns))
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def _count(path: str, turns: int) -> dict[str, Any]:
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from bench.prod_asgi import application

    communicator = WebsocketCommunicator(application, path)
    connected, _ = await communicator.connect()
    assert connected, path
    while (await communicator.receive_json_from(timeout=10))["type"] != "history":
        pass

    async def turn(number: int) -> None:
        await communicator.send_json_to({"type": "user_message", "text": f"question {number}"})
        while (frame := await communicator.receive_json_from(timeout=30))["type"] != "stream_end":
            assert frame["type"] != "error", frame

    for number in range(WARM_UP_TURNS):
        await turn(number)
    loop_calls: collections.Counter[str] = collections.Counter()
    db_calls = [0]

    def count_loop(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            loop_calls[_module(frame.f_code.co_filename)] += 1

    def count_db(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            db_calls[0] += 1

    await sync_to_async(sys.setprofile)(count_db)  # on the database thread (asgiref's)
    sys.setprofile(count_loop)
    for number in range(turns):
        await turn(WARM_UP_TURNS + number)
    sys.setprofile(None)
    await sync_to_async(sys.setprofile)(None)
    await communicator.disconnect()
    loop_calls.pop(_module(__file__), None)  # this driver's own calls
    return {
        "loop": sum(loop_calls.values()) / turns,
        "db": db_calls[0] / turns,
        "modules": {module: n / turns for module, n in loop_calls.items()},
    }


def _module(filename: str) -> str:
    """A call's place, shortened: the package (``langchain_core``), pyhub_ai's module, or the
    standard library's module."""
    path = filename.replace("\\", "/")
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/pyhub_ai/" in path:
        return "pyhub_ai/" + path.split("/pyhub_ai/", 1)[1]
    if "/bench/" in path:
        return "bench/" + path.split("/bench/", 1)[1]
    return "python: " + path.rsplit("/lib/python", 1)[-1].split("/", 1)[-1] if "/lib/python" in path else path


def section(framing: str, counts: dict[tuple[str, int], dict], lengths: list[int]) -> list[str]:
    """One serving's tables: calls per turn of each consumer, and where the app's event loop
    calls more than the floor plus our storage."""
    short, long = min(lengths), max(lengths)
    lines = [
        f"## {framing}",
        "",
        "| consumer | " + " | ".join(f"event loop, {t} tokens" for t in lengths) + f" | per token | database thread, {short} tokens |",
        "|---|" + "---:|" * (len(lengths) + 2),
    ]
    for kind, label in KINDS.items():
        loops = [counts[(kind, t)]["loop"] for t in lengths]
        per_token = (counts[(kind, long)]["loop"] - counts[(kind, short)]["loop"]) / (long - short) if long > short else None
        lines.append(
            f"| {label} | " + " | ".join(f"{n:,.0f}" for n in loops)
            + f" | {'–' if per_token is None else f'{per_token:.1f}'} | {counts[(kind, short)]['db']:,.0f} |"
        )
    app, stored = counts[("fast", short)]["modules"], counts[("stored", short)]["modules"]
    excess = sorted(((app.get(m, 0) - stored.get(m, 0), m) for m in set(app) | set(stored)), reverse=True)
    lines += [
        "",
        f"The app's event loop above the floor plus our storage, {short}-token turns: "
        f"{counts[('fast', short)]['loop'] - counts[('stored', short)]['loop']:+,.0f} calls per turn; by module "
        "(negative: the baseline's own code, which the app does not run):",
        "",
        "| module | calls per turn |",
        "|---|---:|",
        *(f"| `{module}` | {n:+,.0f} |" for n, module in excess[:TOP_MODULES] + [e for e in excess[TOP_MODULES:] if e[0] <= -10]),
        "",
    ]
    return lines


def render(sections: list[list[str]], args: argparse.Namespace, elapsed: float) -> str:
    lines = [
        "# Python calls per chat turn on the production model path",
        "",
        f"Produced by `bench/turn_calls.py` (`make bench ARGS=\"--only calls\"`, {time.strftime('%Y-%m-%d %H:%M %Z')}, {elapsed:.0f} s): "
        f"{args.turns} turns after {WARM_UP_TURNS} warm-up turns on one websocket per consumer, a prompt window of {args.window} stored "
        "messages, each consumer in a fresh process with its own SQLite database, driven in-process (no daphne) against "
        "bench/model_server.py over HTTP. A count is `sys.setprofile`'s call events (Python functions and generator resumptions), "
        "per turn; unlike CPU time it does not move between runs, so it shows whether a change removed work.",
        "",
    ]
    for part in sections:
        lines += part
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
