"""Benchmark: Python function calls and CPU instructions per chat turn, on the production model path.

    python -m bench.turn_calls            (part of ``make bench``; ``--only calls``)
    python -m bench.turn_calls --measure instructions      (one of the two; default: both)

Why: CPU time per reply on the benchmark machine (a 2-core VM) moves by 10–20% between runs of
the same code (bench/results/production.md lists every run), so a change that saves 5% of a
turn cannot be told from noise there. The number of Python function calls a turn makes is the
same from run to run (to within a call or two), and on this path most of a turn's CPU is spent
in Python: it tells whether a change removed work, and where the work is. The number of CPU
instructions a turn executes (valgrind's callgrind) repeats to within about 1% and also counts
the work done in C (the interpreter, sqlite3, json): the noise-free proxy for CPU time, of a
process slowed down by callgrind (the report says what that changes).

What runs: the consumers of bench/prod_asgi.py, each in a fresh process with its own SQLite
database, driven in-process through channels' ``WebsocketCommunicator`` (no daphne), turn after
turn on one websocket, against bench/model_server.py over HTTP (its own process, as in
bench/prod_load.py), served both ways: one request per connection, the body ending with the
connection (as bench/prod_load.py's server), and kept-alive connections with chunked bodies
(as api.openai.com serves). The consumers: the floor (``http``: a minimal asyncio HTTP client, nothing stored), the
floor plus our storage (``stored``) and the app's consumer (``fast``, the default path). After
warm-up turns, ``sys.setprofile`` counts every Python call on the event loop's thread and,
separately, on the database thread (asgiref's, where every query runs). The instructions are
counted in separate worker runs under ``valgrind --tool=callgrind`` (without the profiler, which
would add its own), instrumentation switched on by ``callgrind_control`` for the counted turns
only, per thread; only the first serving, for prompt windows of 2 and 50 stored messages. Writes
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
from collections.abc import Awaitable, Callable
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
MEASURES = ("calls", "instructions")
#: Counted turns of an instruction run: enough for this many reply tokens, and at least
#: ``MIN_INSTRUCTION_TURNS`` (the counts are deterministic; callgrind runs the turns some 100 times slower).
INSTRUCTION_TOKENS = 200
MIN_INSTRUCTION_TURNS = 8
CALLGRIND = ("valgrind", "callgrind_control")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.turn_calls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", default="10,200", help="reply lengths in tokens (default 10,200)")
    parser.add_argument("--window", type=int, default=2, help="stored messages in the prompt, for the calls (default 2)")
    parser.add_argument("--turns", type=int, default=10, help="counted turns per consumer, for the calls (default 10)")
    parser.add_argument("--measure", help="calls, instructions or both, comma-separated (default: both; instructions need valgrind)")
    parser.add_argument("--instruction-windows", default="2,50", help="stored messages in the prompt, for the instructions (default 2,50)")
    parser.add_argument("--worker", nargs=5, metavar=("KIND", "TOKENS", "WINDOW", "TURNS", "KEEP_ALIVE"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-callgrind", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, tokens, window, turns, keep_alive = args.worker
        print(json.dumps(count_calls(kind, int(tokens), int(window), int(turns), keep_alive == "1", args.worker_callgrind)), flush=True)
        return 0
    measures = _measures(parser, args.measure)
    started = time.perf_counter()
    lengths = [int(t) for t in args.tokens.split(",")]
    sections = []
    if "calls" in measures:
        for keep_alive, framing in SERVINGS:
            counts = {(kind, tokens): _run_worker(kind, tokens, args.window, args.turns, keep_alive) for tokens in lengths for kind in KINDS}
            sections.append(section(framing, counts, lengths))
    if "instructions" in measures:
        windows = [int(w) for w in args.instruction_windows.split(",")]
        counts = {
            (kind, tokens, window): _count_instructions(kind, tokens, window, instruction_turns(tokens))
            for window in windows for tokens in lengths for kind in KINDS
        }  # fmt: skip
        sections.append(instruction_section(counts, lengths, windows))
    RESULTS.write_text(render(sections, args, measures, time.perf_counter() - started))
    print(RESULTS.read_text(), flush=True)
    print(f"Wrote {RESULTS}", flush=True)
    return 0


def _measures(parser: argparse.ArgumentParser, option: str | None) -> list[str]:
    """``main``'s ``--measure``: the measures to run. By default both, less the instructions (with
    one line saying so) when valgrind is not installed; asked for explicitly, they need it."""
    measures = list(MEASURES) if option is None else option.split(",")
    if unknown := set(measures) - set(MEASURES):
        parser.error(f"--measure: unknown {', '.join(sorted(unknown))} (choose from {', '.join(MEASURES)})")
    if "instructions" in measures and (missing := [tool for tool in CALLGRIND if shutil.which(tool) is None]):
        if option is not None:
            parser.error(f"--measure instructions needs valgrind ({', '.join(missing)} not found; apt-get install valgrind)")
        print(f"Skipping the CPU instructions per turn: {', '.join(missing)} not found (apt-get install valgrind).", flush=True)
        measures.remove("instructions")
    return measures


def instruction_turns(tokens: int) -> int:
    """``main``: the counted turns of an instruction run of ``tokens``-token replies."""
    return max(MIN_INSTRUCTION_TURNS, INSTRUCTION_TOKENS // tokens)


def _worker_command(kind: str, tokens: int, window: int, turns: int, keep_alive: bool) -> list[str]:
    """``_run_worker`` and ``_count_instructions``: the command line of a worker process."""
    return [sys.executable, "-m", "bench.turn_calls", "--worker", kind, str(tokens), str(window), str(turns), "1" if keep_alive else "0"]


def _run_worker(kind: str, tokens: int, window: int, turns: int, keep_alive: bool) -> dict[str, Any]:
    """``main``: the calls per turn of ``kind``'s consumer, counted by a worker process (``count_calls``)."""
    done = subprocess.run(_worker_command(kind, tokens, window, turns, keep_alive), cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{kind}, {tokens} tokens: the worker failed:\n{done.stderr[-3000:]}")
    print(f"  [{kind} {tokens}t{' keep-alive' if keep_alive else ''}] done", flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _count_instructions(kind: str, tokens: int, window: int, turns: int) -> dict[str, float]:
    """``main``: the instructions per turn of ``kind``'s consumer, ``{"loop": n, "db": n}``: a
    worker under callgrind, instrumented from its "ready" to its "done" (see ``_callgrind_turns``),
    the model server ending each body with the connection."""
    with tempfile.TemporaryDirectory(prefix="turn-instructions-") as folder:
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes", f"--callgrind-out-file={folder}/cg.out.%p",
            *_worker_command(kind, tokens, window, turns, False), "--worker-callgrind",
        ]  # fmt: skip
        with open(os.path.join(folder, "stderr"), "w+") as log:
            worker = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
            try:
                _expect(worker, "ready", log)
                _instrument(worker.pid, "on")
                worker.stdin.write("go\n")
                worker.stdin.flush()
                _expect(worker, "done", log)
                _instrument(worker.pid, "off")
                worker.stdin.close()  # the worker ends
                if worker.wait(timeout=120) != 0:
                    raise RuntimeError(f"{kind}, {tokens} tokens, window {window}: the worker under callgrind failed:\n{_tail(log)}")
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        totals = _thread_totals(folder, worker.pid)
    print(f"  [{kind} {tokens}t window {window}, callgrind] done", flush=True)
    return {"loop": totals[1] / turns, "db": totals[2] / turns}


def _expect(worker: subprocess.Popen, line: str, log: Any) -> None:
    """``_count_instructions``: wait for the worker's next stdout line, which must be ``line``."""
    if (got := worker.stdout.readline().strip()) != line:
        raise RuntimeError(f"the worker under callgrind said {got!r}, not {line!r}:\n{_tail(log)}")


def _tail(log: Any) -> str:
    """``_count_instructions``: the end of the worker's stderr (valgrind's and Python's)."""
    log.seek(0)
    return log.read()[-3000:]


def _instrument(pid: int, state: str) -> None:
    """``_count_instructions``: switch callgrind's instrumentation of process ``pid`` on or off."""
    subprocess.run(["callgrind_control", "-i", state, str(pid)], check=True, capture_output=True, timeout=120)


def _thread_totals(folder: str, pid: int) -> dict[int, int]:
    """``_count_instructions``: the instructions counted on each thread of process ``pid``, by
    callgrind's thread number (1: the event loop's, the main thread; 2: the first thread started,
    asgiref's database thread), from the ``totals:`` line of its output file."""
    totals = {}
    for path in Path(folder).glob(f"cg.out.{pid}-*"):
        line = next(line for line in path.read_text().splitlines() if line.startswith("totals:"))
        totals[int(path.name.rsplit("-", 1)[1])] = int(line.split()[1])
    if others := {thread: n for thread, n in totals.items() if thread > 2 and n}:
        raise RuntimeError(f"instructions on threads other than the event loop's and the database's: {others}")
    return totals


def count_calls(kind: str, tokens: int, window: int, turns: int, keep_alive: bool, callgrind: bool = False) -> dict[str, Any]:
    """In this (fresh) process: the calls per turn of ``kind``'s consumer (see the module
    docstring); ``{"loop": n, "db": n, "modules": {module: n}}``, per turn. With ``callgrind``
    (a worker of ``_count_instructions``), no profiler: the turns are counted by callgrind, and
    the result is ``{}``."""
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
        return asyncio.run(_count(path, turns, callgrind))
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def _count(path: str, turns: int, callgrind: bool) -> dict[str, Any]:
    """``count_calls``: connect to ``path``, run the warm-up turns, then the counted ones, under
    the profiler (``_profiled_turns``) or under callgrind (``_callgrind_turns``)."""
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

    async def counted_turns() -> None:
        for number in range(turns):
            await turn(WARM_UP_TURNS + number)

    for number in range(WARM_UP_TURNS):
        await turn(number)
    result = await (_callgrind_turns(counted_turns) if callgrind else _profiled_turns(counted_turns, turns))
    await communicator.disconnect()
    return result


async def _profiled_turns(counted_turns: Callable[[], Awaitable[None]], turns: int) -> dict[str, Any]:
    """``_count``: run the counted turns with ``sys.setprofile`` counting the calls on the event
    loop's thread and on the database thread; the calls per turn."""
    from asgiref.sync import sync_to_async

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
    await counted_turns()
    sys.setprofile(None)
    await sync_to_async(sys.setprofile)(None)
    loop_calls.pop(_module(__file__), None)  # this driver's own calls
    return {
        "loop": sum(loop_calls.values()) / turns,
        "db": db_calls[0] / turns,
        "modules": {module: n / turns for module, n in loop_calls.items()},
    }


async def _callgrind_turns(counted_turns: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """``_count``, in a worker under callgrind: say "ready" on stdout, run the counted turns when
    the parent (``_count_instructions``, which then switches the instrumentation on) writes a line
    on stdin, say "done", and return when it closes stdin (the instrumentation off). Stdin is
    read by the event loop itself: no thread is started."""
    loop = asyncio.get_running_loop()
    parent = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(parent), sys.stdin)
    print("ready", flush=True)
    await parent.readline()
    await counted_turns()
    print("done", flush=True)
    await parent.read()
    return {}


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


def instruction_section(counts: dict[tuple[str, int, int], dict], lengths: list[int], windows: list[int]) -> list[str]:
    """``main``: the table of instructions per turn, by prompt window, reply length and thread,
    with the app's ratios to the floor and to the floor plus our storage."""
    turns = ", ".join(f"{instruction_turns(t)} for {t}-token replies" for t in lengths)
    lines = [
        "## CPU instructions per turn (callgrind)",
        "",
        "Counted by valgrind's callgrind, its instrumentation switched on (`callgrind_control -i on`) for the counted turns only "
        f"({turns}, after {WARM_UP_TURNS} warm-up turns, each consumer in a separate process run without the profiler): "
        "the user-space instructions the process executes, on the event loop's thread and on asgiref's database thread, per turn. "
        "The test client runs in the same process, so its own work (channels' `WebsocketCommunicator`, the driver) is included "
        "and the same for the three consumers; the model server (its own process), kernel time (system calls, the network stack), "
        "cache misses and stalls, and daphne's websocket layer are not. Unlike CPU time, which moves by 10–20% between runs on "
        "this machine, the counts repeat to within about 1%: a change in them is a change in the work done. But under callgrind the "
        "process runs some 100 times slower while the model server still sends a token every 5 ms: the consumers find several tokens "
        "in one read where a native process reads each alone (fewer event-loop wake-ups: at 200 tokens, about half the floor's "
        "instructions of a run paced slowly enough to read them one by one), and the work done by the clock (frames at most every "
        "50 ms, the app's partial saves every 2 s) follows the slowed process; compare these counts with each other, not with a "
        "native process's. One serving only: one request per connection, the body ending with it (the production benchmark's server).",
        "",
        "| prompt window | reply | thread | floor | floor + storage | app | app ÷ floor | app ÷ (floor + storage) "
        "| (floor + storage) ÷ floor | app − (floor + storage) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for window in windows:
        for tokens in lengths:
            for thread, label in (("loop", "event loop"), ("db", "database"), (None, "both")):
                floor, stored, app = (
                    _instructions(counts[(kind, tokens, window)], thread) for kind in ("http", "stored", "fast")
                )  # fmt: skip
                # The floor does next to nothing on the database thread: no ratio to it there.
                of_floor = ("–", "–") if thread == "db" else (f"{app / floor:.2f}", f"{stored / floor:.2f}")
                lines.append(
                    f"| {window} | {tokens} tokens | {label} | {floor / 1e6:.2f} M | {stored / 1e6:.2f} M | {app / 1e6:.2f} M "
                    f"| {of_floor[0]} | {app / stored:.2f} | {of_floor[1]} | {(app - stored) / 1e6:+.2f} M |"
                )
    return lines + [""]


def _instructions(count: dict[str, float], thread: str | None) -> float:
    """``instruction_section``: one run's instructions per turn on ``thread`` (None: both)."""
    return count[thread] if thread else count["loop"] + count["db"]


def render(sections: list[list[str]], args: argparse.Namespace, measures: list[str], elapsed: float) -> str:
    """``main``: bench/results/turn_calls.md, the sections of the measures run under a common
    introduction."""
    calls = (
        f"The calls: {args.turns} turns after {WARM_UP_TURNS} warm-up turns, a prompt window of {args.window} stored messages. "
        "A count is `sys.setprofile`'s call events (Python functions and generator resumptions), per turn; unlike CPU time it "
        "does not move between runs, so it shows whether a change removed work."
    )  # fmt: skip
    lines = [
        "# Python calls and CPU instructions per chat turn on the production model path",
        "",
        f"Produced by `bench/turn_calls.py` (`make bench ARGS=\"--only calls\"`, {time.strftime('%Y-%m-%d %H:%M %Z')}, {elapsed:.0f} s): "
        "one websocket per consumer, each consumer in a fresh process with its own SQLite database, driven in-process (no daphne) "
        "against bench/model_server.py over HTTP." + (f" {calls}" if "calls" in measures else ""),
        "",
    ]
    for part in sections:
        lines += part
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
