"""Benchmark: many concurrent websocket conversations against real daphne processes.

A real ``daphne`` process (``python -m daphne -e tcp:port=P:interface=127.0.0.1:backlog=2048
bench.load_asgi:application``, settings ``bench.load_settings``) serves two routes (see
bench/load_asgi.py): ``pyhub_ai.consumers.AgentChatConsumer`` answered by a fake model that
streams 50 tokens 20 ms apart (1.0 s of "model time" per reply), and the BASELINE, a bare channels
consumer that sends the same frames at the same pace and stores nothing.

An asyncio client (the ``websockets`` package, in this process) drives N conversations, each
in its own owner-less conversation created up front. Per run:

1. warm-up: one connection, one turn (imports, first queries), closed; then daphne's RSS;
2. ramped connect: N connections opened at ``RAMP_RATE`` per second, each waits for
   ``welcome`` + ``history``; then (all N idle and open) daphne's RSS again;
3. turns: every connection waits a random 0..1 s (users are not synchronised), then does T
   turns back to back: ``user_message``, then frames until ``stream_end`` (or ``error``);
   turn latency = send -> ``stream_end``; server overhead = latency - the model's own
   streaming time (tokens x pace). No turn starts after ``PHASE_LIMIT`` seconds;
4. the N connections are closed; then a BURST: N connections opened at once (all connect
   calls started together), each waits for ``welcome`` + ``history``, then closed;
5. daphne is stopped; the stored ``ConversationMessage`` rows of the run's conversations are
   counted (expected: N x T x 2 ``complete`` rows).

Scenario groups run in worker processes (Django is configured once per process, on one
database): ``sqlite`` (SQLite file + in-memory channel layer) and ``postgres`` (PostgreSQL +
Redis channel layer, from ``PYHUB_AI_BENCH_POSTGRES_URL`` and ``PYHUB_AI_BENCH_REDIS_URL``,
which scripts/bench.sh sets). The runner writes bench/results/load.md (and profile.md when
the hot path is profiled with py-spy). All traffic goes to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import json
import os
import platform
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
LOAD_RESULTS = RESULTS_DIR / "load.md"
PROFILE_RESULTS = RESULTS_DIR / "profile.md"
VAR = ROOT / "var" / "bench"

TOKENS = 50
PACE = 0.02
MODEL_TIME = TOKENS * PACE
DEFAULT_TURNS = 3
RAMP_RATE = 200  # connections per second in the ramped connect
HANDSHAKE_TIMEOUT = 15.0  # client side; daphne itself drops a handshake not accepted within 5 s
READY_TIMEOUT = 20.0  # from the handshake to the ``history`` frame
TURN_TIMEOUT = 20.0  # one turn, from sending user_message to stream_end
PHASE_LIMIT = 30.0  # no turn starts later than this after the turn phase began
DRAIN_LIMIT = 15.0  # seconds to wait for daphne to go idle after closing connections
IDLE_SETTLE = 1.0  # seconds between the last connection and the idle RSS reading
START_TIMEOUT = 30.0  # daphne listening
DEFAULT_BUDGET = 480  # seconds for all runs; a run that would not fit is skipped (reported)
RUN_ESTIMATE = 30.0  # seconds a run needs at least (start, connect, turns, burst, stop)
PROFILE_SECONDS = 20

OTHER_CPU_WARNING = 25.0  # % of a core used by other processes during a run: flagged in the report
TARGET_CONVERSATIONS = 1000
TARGET_OVERHEAD_P99_MS = 50.0
TARGET_OVERHEAD_AT = 500
TARGET_RSS_KB = 100.0
TARGET_RATIO = 0.75

# The scenarios of `make bench` (see the module docstring): (group, scenario, consumer, N, processes).
DEFAULT_SQLITE_SIZES = (100, 500, 1000)
DEFAULT_POSTGRES_SIZES = (100, 500)
DEFAULT_TWO_PROCESS_SIZES = (500, 1000)
PROFILE_N = 500


# ---- processes: daphne, /proc ------------------------------------------------------------------


def raise_nofile_limit() -> tuple[int, int]:
    """Raise this process's open-files soft limit to the hard limit (daphne inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"No VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process's main thread (daphne's event loop); the rest of
    ``cpu_seconds(pid)`` is its other threads' (the database thread, executors)."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def _stat_cpu_seconds(stat: Path) -> float:
    """utime + stime of a ``/proc`` ``stat`` file, in seconds."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process, its finished (waited-for) children and its live children:
    a PostgreSQL postmaster and its backends, which come and go."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                child = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(child[1]) == pid:
                total += (int(child[11]) + int(child[12])) / os.sysconf("SC_CLK_TCK")
    return total


def service_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += tree_cpu_seconds(pid)
        except OSError:
            pass
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Daphne:
    """One daphne process on a free port of 127.0.0.1; ``stop()`` ends it (by its pid)."""

    def __init__(self, env: dict[str, str], name: str, app: str = "bench.load_asgi:application") -> None:
        self.port = free_port()
        VAR.mkdir(parents=True, exist_ok=True)
        self.log_path = VAR / f"daphne-{name}-{self.port}.log"
        command = [
            sys.executable, "-m", "daphne",
            "-e", f"tcp:port={self.port}:interface=127.0.0.1:backlog=2048",
            app,
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.pid = self.process.pid
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"daphne did not start on port {self.port}:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


# ---- the client --------------------------------------------------------------------------------


@dataclass
class Connection:
    index: int
    ws: Any = None
    open_s: float | None = None  # TCP connect + websocket handshake
    ready_s: float | None = None  # ... + welcome + history
    error: str | None = None


@dataclass
class TurnStats:
    latencies: list[float] = field(default_factory=list)
    errors: collections.Counter = field(default_factory=collections.Counter)
    short_streams: int = 0  # streamed text (however many stream_delta frames) != the stored reply
    skipped: int = 0  # turns not started (PHASE_LIMIT, or the connection was lost)
    last_end: float = 0.0
    turn_ids: list[str] = field(default_factory=list)  # of the turns that ended with stream_end


def _describe(exc: BaseException) -> str:
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionClosed):
        return f"closed {exc.rcvd.code if exc.rcvd else 1006}"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    return type(exc).__name__


async def open_connection(index: int, uri: str, start_at: float) -> Connection:
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    delay = start_at - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
    conn = Connection(index)
    started = time.perf_counter()
    try:
        conn.ws = await connect(
            uri, compression=None, ping_interval=None, open_timeout=HANDSHAKE_TIMEOUT, close_timeout=2, max_size=2**20
        )
    except Exception as exc:  # noqa: BLE001 - every failure is a measured outcome
        conn.error = f"handshake: {_describe(exc)}"
        return conn
    conn.open_s = time.perf_counter() - started
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            while True:
                frame = json.loads(await conn.ws.recv())
                if frame["type"] == "history":
                    break
                if frame["type"] == "error":
                    raise RuntimeError(f"error frame {frame.get('code')}")
        conn.ready_s = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001
        conn.error = f"ready: {_describe(exc) if not isinstance(exc, RuntimeError) else exc}"
        await conn.ws.close()
        conn.ws = None
    return conn


async def run_turns(conn: Connection, turns: int, jitter: float, deadline: float, stats: TurnStats, rng: random.Random) -> None:
    from websockets.exceptions import ConnectionClosed

    ws = conn.ws
    await asyncio.sleep(rng.uniform(0, jitter))
    for turn in range(turns):
        if time.perf_counter() > deadline:
            stats.skipped += turns - turn
            return
        payload = json.dumps({"type": "user_message", "text": f"Question {turn + 1} of conversation {conn.index}?"})
        streamed: list[str] = []
        started = time.perf_counter()
        try:
            async with asyncio.timeout(TURN_TIMEOUT):
                await ws.send(payload)
                while True:
                    text = await ws.recv()
                    frame = json.loads(text)
                    if frame["type"] == "stream_delta":
                        streamed.append(frame["text"])
                        continue
                    if frame["type"] == "stream_end":
                        stats.turn_ids.append(frame.get("turn_id", ""))
                        final_text = frame["message"]["text"]
                        break
                    if frame["type"] == "error":
                        raise LookupError(frame.get("code", "?"))
        except LookupError as exc:
            stats.errors[f"error frame {exc.args[0]}"] += 1
            continue
        except ConnectionClosed as exc:
            stats.errors[f"connection {_describe(exc)}"] += 1
            stats.skipped += turns - turn - 1
            conn.ws = None
            return
        except TimeoutError:
            stats.errors["turn timeout"] += 1
            stats.skipped += turns - turn - 1
            await ws.close()
            conn.ws = None
            return
        ended = time.perf_counter()
        stats.latencies.append(ended - started)
        stats.last_end = max(stats.last_end, ended)
        if "".join(streamed) != final_text:
            stats.short_streams += 1


async def close_all(connections: list[Connection]) -> None:
    async def close(conn: Connection) -> None:
        if conn.ws is not None:
            try:
                await conn.ws.close()
            except Exception:  # noqa: BLE001
                pass
            conn.ws = None

    await asyncio.gather(*(close(c) for c in connections))


def _ms_stats(samples: list[float], offset: float = 0.0) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p99": None, "max": None}
    values = sorted((s - offset) * 1000 for s in samples)
    if len(values) == 1:
        return {"p50": values[0], "p99": values[0], "max": values[0]}
    return {
        "p50": statistics.median(values),
        "p99": statistics.quantiles(values, n=100, method="inclusive")[98],
        "max": values[-1],
    }


def _connect_summary(connections: list[Connection], elapsed: float) -> dict:
    ok = [c for c in connections if c.ready_s is not None]
    return {
        "attempted": len(connections),
        "ready": len(ok),
        "failures": dict(collections.Counter(c.error for c in connections if c.error)),
        "open_ms": _ms_stats([c.open_s for c in connections if c.open_s is not None]),
        "ready_ms": _ms_stats([c.ready_s for c in ok]),
        "elapsed_s": elapsed,
    }


async def connect_all(uris: list[str], rate: float | None) -> tuple[list[Connection], float]:
    """Open one connection per uri: ``rate`` per second, or all at once (``None``: burst)."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    started = time.perf_counter()
    connections = await asyncio.gather(
        *(open_connection(i, uri, start + (i / rate if rate else 0.0)) for i, uri in enumerate(uris))
    )
    return list(connections), time.perf_counter() - started


async def warm_up(uri: str) -> None:
    conn = await open_connection(-1, uri, 0)
    if conn.ws is None:
        raise RuntimeError(f"The warm-up connection to {uri} failed: {conn.error}")
    stats = TurnStats()
    await run_turns(conn, 1, 0.0, time.perf_counter() + 30, stats, random.Random(0))
    await close_all([conn])
    if not stats.latencies:
        raise RuntimeError(f"The warm-up turn on {uri} failed: {dict(stats.errors)}")


def py_spy_path() -> str | None:
    found = shutil.which("py-spy")
    beside = Path(sys.executable).with_name("py-spy")
    return found or (str(beside) if beside.exists() else None)


class Profiler:
    """py-spy recording a daphne process (raw collapsed stacks, aggregated by function)."""

    def __init__(self, pid: int, output: Path, seconds: int) -> None:
        self.output = output
        self.command = [
            py_spy_path() or "py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
            "--format", "raw", "--function", "--threads", "--nonblocking", "--output", str(output),
        ]  # fmt: skip
        self.log = output.with_suffix(".log")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait(self, timeout: float) -> str | None:
        """None on success, else why it failed."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(5)
            return "py-spy did not finish"
        if self.process.returncode != 0 or not self.output.exists():
            return f"py-spy exited with {self.process.returncode}: {self.log.read_text(errors='replace')[-500:]}"
        return None


async def drain(pids: list[int], limit: float = DRAIN_LIMIT) -> float:
    """Wait until the daphne processes are idle (they finish storing the turns of closed
    connections); at most ``limit`` seconds. Returns the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        before = [cpu_seconds(pid) for pid in pids]
        await asyncio.sleep(0.5)
        if all(cpu_seconds(pid) - b < 0.025 for pid, b in zip(pids, before)):  # < 5% of a core
            break
    return time.perf_counter() - started


async def drive(run: dict, uris: list[str], warm_uris: list[str], pids: list[int]) -> dict:
    """Steps 1-4 of the module docstring against running daphne process(es)."""
    turns = run["turns"]
    loadavg = Path("/proc/loadavg").read_text().split()[0]  # other work on the machine before this run
    for uri in warm_uris:
        await warm_up(uri)
    await asyncio.sleep(0.5)
    rss_before = sum(rss_kb(pid) for pid in pids)

    # Ramped connect; then all connections idle.
    ramp, ramp_s = await connect_all(uris, RAMP_RATE)
    connected = [c for c in ramp if c.ws is not None]
    await asyncio.sleep(IDLE_SETTLE)
    rss_idle = sum(rss_kb(pid) for pid in pids)

    # Turns.
    profiler = None
    if run.get("profile"):
        profiler = Profiler(pids[0], Path(run["profile"]), PROFILE_SECONDS)
    stats = TurnStats()
    rng = random.Random(1234)
    services = run.get("service_pids", [])
    cpu_before = ([cpu_seconds(pid) for pid in pids], time.process_time(), machine_cpu(), service_cpu_seconds(services))
    started = time.perf_counter()
    deadline = started + run.get("phase_limit", PHASE_LIMIT)
    await asyncio.gather(*(run_turns(c, turns, MODEL_TIME, deadline, stats, rng) for c in connected))
    finished = time.perf_counter()
    cpu_after = ([cpu_seconds(pid) for pid in pids], time.process_time(), machine_cpu(), service_cpu_seconds(services))
    phase_s = (stats.last_end or finished) - started
    wall = finished - started
    profile_error = profiler.wait(PROFILE_SECONDS + 30) if profiler else None

    await close_all(ramp)
    drained = await drain(pids)
    rss_after_turns = sum(rss_kb(pid) for pid in pids)

    # Burst connect, then close (not in the profiling run).
    burst, burst_s = await connect_all(uris if not run.get("profile") else [], None)
    burst_summary = _connect_summary(burst, burst_s)
    await close_all(burst)
    drained += await drain(pids)
    rss_end = sum(rss_kb(pid) for pid in pids)

    machine_busy = cpu_after[2][0] - cpu_before[2][0]
    machine_total = cpu_after[2][1] - cpu_before[2][1]
    daphne_pct = [100 * (a - b) / wall for a, b in zip(cpu_after[0], cpu_before[0])]
    client_pct = 100 * (cpu_after[1] - cpu_before[1]) / wall
    machine_pct = 100 * machine_busy / machine_total * (os.cpu_count() or 1) if machine_total else None
    services_pct = 100 * (cpu_after[3] - cpu_before[3]) / wall
    done = len(stats.latencies)
    return {
        "ramp": _connect_summary(ramp, ramp_s),
        "burst": burst_summary,
        "connected": len(connected),
        "turns_expected": len(uris) * turns,
        "turns_done": done,
        "turns_skipped": stats.skipped,
        "turn_errors": dict(stats.errors),
        "short_streams": stats.short_streams,
        "phase_s": phase_s,
        "turns_per_s": done / phase_s if phase_s > 0 else 0.0,
        "latency_ms": _ms_stats(stats.latencies),
        "overhead_ms": _ms_stats(stats.latencies, MODEL_TIME),
        "rss_kb": {"before": rss_before, "idle": rss_idle, "after_turns": rss_after_turns, "end": rss_end},
        "rss_per_idle_kb": (rss_idle - rss_before) / len(connected) if connected else None,
        "cpu": {
            "daphne_pct": daphne_pct,
            "client_pct": client_pct,
            "machine_pct": machine_pct,
            "services_pct": services_pct if services else None,  # PostgreSQL (all backends) + Redis
            # Everything else on the machine: not part of this benchmark.
            "other_pct": max(machine_pct - sum(daphne_pct) - client_pct - services_pct, 0.0) if machine_pct is not None else None,
            # daphne CPU time per answered turn: what a turn costs, whatever else runs on the machine
            # (turns that did not finish also cost CPU: only comparable when (nearly) all finished).
            "daphne_ms_per_turn": 1000 * sum(a - b for a, b in zip(cpu_after[0], cpu_before[0])) / done if done else None,
        },
        "loadavg_before": loadavg,
        "drain_s": drained,
        "profile_error": profile_error,
        "turn_ids": stats.turn_ids,
    }


# ---- the worker (Django configured: seeding and counting) -------------------------------------


def seed_conversations(label: str, count: int) -> list[int]:
    from pyhub_ai.models import Conversation

    created = Conversation.objects.bulk_create([Conversation(title=label) for _ in range(count)], batch_size=500)
    pks = [c.pk for c in created]
    if None in pks:  # a backend without RETURNING for bulk inserts
        pks = list(Conversation.objects.filter(title=label).order_by("pk").values_list("pk", flat=True))
    return pks


def count_stored_turns(turn_ids: list[str]) -> int:
    """How many of these turns have both their messages (human and AI) stored ``complete``."""
    from django.db.models import Count

    from pyhub_ai.models import ConversationMessage

    stored = 0
    for start in range(0, len(turn_ids), 500):
        rows = (
            ConversationMessage.objects.filter(turn_id__in=turn_ids[start : start + 500], status="complete")
            .values("turn_id")
            .annotate(n=Count("id"))
        )
        stored += sum(1 for row in rows if row["n"] >= 2)
    return stored


def count_messages(label: str) -> dict[str, int]:
    from django.db.models import Count

    from pyhub_ai.models import ConversationMessage

    rows = (
        ConversationMessage.objects.filter(conversation__title=label)
        .values("role", "status")
        .annotate(n=Count("id"))
    )
    return {f"{row['role']}/{row['status']}": row["n"] for row in rows}


#: The baselines' routes (bench/load_asgi.py): bare channels, and bare channels + the LangChain model.
BASELINE_PATHS = {"bare": "ws/bench/bare/", "model": "ws/bench/bare-model/"}


def run_one(run: dict, env: dict[str, str]) -> dict:
    """Seed, start daphne(s), drive, stop, count. Runs in the worker process."""
    from django.db import connection

    label = f"load {run['name']} {os.getpid()}"
    n = run["n"]
    if run["consumer"] == "chat":
        pks = seed_conversations(label, n)
        warm = seed_conversations(f"warm-up {label}", run["processes"])
        paths = [f"ws/bench/chat/{pk}/" for pk in pks]
        warm_paths = [f"ws/bench/chat/{pk}/" for pk in warm]
    else:
        path = BASELINE_PATHS[run["consumer"]]
        paths = [path] * n
        warm_paths = [path] * run["processes"]
    connection.close()  # daphne writes; this process only reads afterwards

    servers = []
    try:
        for index in range(run["processes"]):
            servers.append(Daphne(env, f"{run['name']}-{index}"))
        # Clients split evenly over the processes (i % processes).
        uris = [f"ws://127.0.0.1:{servers[i % len(servers)].port}/{p}" for i, p in enumerate(paths)]
        warm_uris = [f"ws://127.0.0.1:{s.port}/{p}" for s, p in zip(servers, warm_paths)]
        print(f"  [{run['name']}] {run['consumer']} N={n:,} T={run['turns']} on {len(servers)} daphne process(es)", flush=True)
        result = asyncio.run(drive(run, uris, warm_uris, [s.pid for s in servers]))
        logs = {s.port: s.log_tail(15) for s in servers}
    finally:
        for server in servers:
            server.stop()

    result = {**run, **result}
    result["daphne_log_errors"] = sum(text.count("Traceback") for text in logs.values())
    result["daphne_log_tail"] = next((t for t in logs.values() if "Traceback" in t or "rror" in t), "")
    if run["consumer"] == "chat":
        stored = count_messages(label)
        result["stored"] = stored
        result["stored_complete"] = stored.get("human/complete", 0) + stored.get("ai/complete", 0)
        result["stored_nominal"] = n * run["turns"] * 2
        # The turns that ended with stream_end: are both their messages stored complete?
        result["answered_turns_stored"] = count_stored_turns(result["turn_ids"])
    result.pop("turn_ids", None)
    o, lat = result["overhead_ms"], result["latency_ms"]
    print(
        f"  [{run['name']}] ramp ready {result['ramp']['ready']}/{n}, burst ready {result['burst']['ready']}/{n}; "
        f"{result['turns_done']}/{result['turns_expected']} turns, {result['turns_per_s']:.1f} turns/s; "
        f"latency p50 {_fmt(lat['p50'])} p99 {_fmt(lat['p99'])} ms; overhead p50 {_fmt(o['p50'])} p99 {_fmt(o['p99'])} ms; "
        f"errors {result['turn_errors'] or 0}; RSS/idle conn {_fmt(result['rss_per_idle_kb'])} KB; "
        f"CPU daphne {'+'.join(f'{p:.0f}' for p in result['cpu']['daphne_pct'])}%, client {result['cpu']['client_pct']:.0f}%"
        + (
            f"; stored complete {result['stored_complete']}/{result['stored_nominal']}, answered turns stored "
            f"{result['answered_turns_stored']}/{result['turns_done']} {result['stored']}"
            if "stored" in result else ""
        ),
        flush=True,
    )
    return result


def run_worker(group: str, runs: list[dict]) -> dict:
    """Runs in a process whose DJANGO_SETTINGS_MODULE is bench.load_settings.

    A run is skipped when it would start after its ``deadline`` (a time.time() value) minus
    ``RUN_ESTIMATE`` (optional runs: minus twice that), so the whole benchmark stays bounded."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    limits = raise_nofile_limit()
    call_command("migrate", verbosity=0, interactive=False)
    service_pids = []
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version" if connection.vendor == "postgresql" else "SELECT sqlite_version()")
        server_version = cursor.fetchone()[0]
        if connection.vendor == "postgresql":
            cursor.execute("SHOW data_directory")
            try:
                service_pids.append(int((Path(cursor.fetchone()[0]) / "postmaster.pid").read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                print("  (the PostgreSQL server's pid is unknown: its CPU is counted as 'other')", flush=True)
    connection.close()
    if os.environ.get("PYHUB_AI_BENCH_LOAD_REDIS_URL"):
        import redis

        client = redis.Redis.from_url(os.environ["PYHUB_AI_BENCH_LOAD_REDIS_URL"])
        service_pids.append(int(client.info("server")["process_id"]))
        client.close()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.load_settings",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
    }
    results = []
    for run in runs:
        margin = RUN_ESTIMATE * (2 if run.get("optional") else 1)
        if time.time() + margin > run["deadline"]:
            print(f"  [{run['name']}] skipped: the time budget is used up", flush=True)
            results.append({**run, "skipped": "time budget used up"})
            continue
        try:
            results.append(run_one({**run, "service_pids": service_pids}, env))
        except Exception as exc:  # noqa: BLE001 - one failed run is reported, the others still run
            print(f"  [{run['name']}] FAILED: {exc!r}", flush=True)
            results.append({**run, "failed": repr(exc)})
    from django.conf import settings

    database = settings.DATABASES["default"]
    reuse = f"CONN_MAX_AGE={database.get('CONN_MAX_AGE', 0)}, CONN_HEALTH_CHECKS={database.get('CONN_HEALTH_CHECKS', False)}"
    return {
        "group": group, "vendor": connection.vendor, "server_version": server_version, "nofile": limits,
        "connections": reuse, "variant": os.environ.get("PYHUB_AI_BENCH_LOAD_VARIANT", ""), "runs": results,
    }  # fmt: skip


# ---- the runner (no Django here) ---------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _run_group(group: str, runs: list[dict], deadline: float, module: str = "bench.ws_load", settings: str = "bench.load_settings") -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings, "PYTHONPATH": str(ROOT)}
    env["PYHUB_AI_BENCH_LOAD_TOKENS"] = str(TOKENS)
    env["PYHUB_AI_BENCH_LOAD_PACE"] = str(PACE)
    cleanup = []
    if group == "sqlite":
        VAR.mkdir(parents=True, exist_ok=True)
        path = VAR / f"load-{os.getpid()}.sqlite3"
        env["PYHUB_AI_BENCH_LOAD_DB"] = "sqlite"
        env["PYHUB_AI_BENCH_LOAD_SQLITE_PATH"] = str(path)
        env.pop("PYHUB_AI_BENCH_LOAD_REDIS_URL", None)

        def remove_files() -> None:
            for suffix in ("", "-journal", "-wal", "-shm", ".migrated"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        remove_files()
        cleanup.append(remove_files)
    else:
        from bench.history_scaling import create_throwaway_database

        url = os.environ.get("PYHUB_AI_BENCH_POSTGRES_URL")
        redis_url = os.environ.get("PYHUB_AI_BENCH_REDIS_URL")
        if not url or not redis_url:
            raise SystemExit(
                "PYHUB_AI_BENCH_POSTGRES_URL and PYHUB_AI_BENCH_REDIS_URL must be set for the PostgreSQL + Redis "
                "scenarios: run `make bench` (it starts throwaway servers), or pass --load-scenarios sqlite."
            )
        name, drop_database = create_throwaway_database(url, "_load")
        env["PYHUB_AI_BENCH_LOAD_DB"] = "postgres"
        env["PYHUB_AI_BENCH_LOAD_POSTGRES_NAME"] = name
        env["PYHUB_AI_BENCH_LOAD_REDIS_URL"] = redis_url
        cleanup.append(drop_database)
    try:
        with tempfile.NamedTemporaryFile("r", suffix=".json") as output, tempfile.NamedTemporaryFile("w", suffix=".json") as spec:
            json.dump([{**run, "deadline": deadline} for run in runs], spec)
            spec.flush()
            command = [sys.executable, "-m", module, "--worker", group, "--spec", spec.name, "--json", output.name]
            # Hard bound: the budget, plus the longest a started run can take.
            timeout = max(deadline - time.time(), 0) + PHASE_LIMIT + TURN_TIMEOUT + 2 * DRAIN_LIMIT + 3 * READY_TIMEOUT + 60
            subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=timeout)
            return json.load(output)
    finally:
        for step in cleanup:
            step()


def plan(scenarios: list[str], turns: int, sqlite_sizes: list[int], profile_n: int | None) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    if "sqlite" in scenarios:
        runs = []
        for n in sqlite_sizes:
            runs.append({"name": f"sqlite-chat-{n}", "scenario": "a", "consumer": "chat", "n": n, "turns": turns, "processes": 1})
            runs.append({"name": f"sqlite-bare-{n}", "scenario": "a", "consumer": "bare", "n": n, "turns": turns, "processes": 1})
            runs.append({"name": f"sqlite-model-{n}", "scenario": "a", "consumer": "model", "n": n, "turns": turns, "processes": 1})
        if profile_n and not py_spy_path():
            print("py-spy is not installed (`.venv/bin/pip install py-spy`): no profile run.", flush=True)
        elif profile_n:
            # A separate run (py-spy slows daphne a little): turns until ~PROFILE_SECONDS are covered.
            runs.append({
                "name": f"profile-sqlite-chat-{profile_n}", "scenario": "profile", "consumer": "chat", "n": profile_n,
                "turns": 25, "processes": 1, "phase_limit": PROFILE_SECONDS + 1.0,
                "profile": str(VAR / f"profile-sqlite-chat-{profile_n}.txt"),
            })  # fmt: skip
        groups["sqlite"] = runs
    runs = []
    if "postgres" in scenarios:
        for n in DEFAULT_POSTGRES_SIZES:
            runs.append({"name": f"pg-redis-chat-{n}", "scenario": "b", "consumer": "chat", "n": n, "turns": turns, "processes": 1})
    if "two" in scenarios:
        for n in DEFAULT_TWO_PROCESS_SIZES:
            runs.append({
                "name": f"pg-redis-2proc-chat-{n}", "scenario": "c", "consumer": "chat", "n": n, "turns": turns, "processes": 2,
                "optional": n > 500,  # "and 1000 if time allows"
            })  # fmt: skip
    if runs:
        groups["postgres"] = runs
    return groups


# ---- the report --------------------------------------------------------------------------------

SCENARIO_TITLES = {
    "a": "(a) SQLite + in-memory channel layer, one daphne process: pyhub_ai vs. the bare baseline",
    "b": "(b) PostgreSQL + Redis channel layer, one daphne process",
    "c": "(c) PostgreSQL + Redis channel layer, two daphne processes (clients split half/half)",
}


def _errors_text(run: dict) -> str:
    parts = [f"{count} {kind}" for kind, count in sorted(run["turn_errors"].items())]
    if run["short_streams"]:
        parts.append(f"{run['short_streams']} incomplete streams")
    if run["turns_skipped"]:
        parts.append(f"{run['turns_skipped']} turns not run")
    return ", ".join(parts) or "0"


def _failures_text(summary: dict) -> str:
    failed = summary["attempted"] - summary["ready"]
    if not failed:
        return "0"
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(summary["failures"].items(), key=lambda kv: -kv[1]))
    return f"{failed} ({kinds})"


def _consumer_label(run: dict) -> str:
    return {"chat": "pyhub_ai", "bare": "baseline (bare)", "model": "baseline (bare + LangChain model)"}[run["consumer"]]


def render_turn_table(runs: list[dict]) -> list[str]:
    lines = [
        "| consumer | N | turns answered / N×T | turns/s | turn p50 / p99 (ms) | overhead p50 / p99 (ms) | errors | rows stored complete / N×T×2 | answered turns not stored | CPU % daphne / client / PG+Redis / other | daphne CPU per turn (ms) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        if "failed" in run or "skipped" in run:
            why = f"run failed: {run['failed']}" if "failed" in run else f"skipped: {run['skipped']}"
            lines.append(f"| {_consumer_label(run)} | {run['n']:,} | {why} | | | | | | | | |")
            continue
        lat, over, cpu = run["latency_ms"], run["overhead_ms"], run["cpu"]
        stored, lost = "– (stores nothing)", "–"
        if "stored" in run:
            stored = f"{run['stored_complete']:,} / {run['stored_nominal']:,}"
            others = {k: v for k, v in run["stored"].items() if not k.endswith("/complete")}
            if others:
                stored += " (+ " + ", ".join(f"{v} {k}" for k, v in sorted(others.items())) + ")"
            lost = f"{run['turns_done'] - run['answered_turns_stored']:,}"
        lines.append(
            f"| {_consumer_label(run)} | {run['n']:,} | {run['turns_done']:,} / {run['turns_expected']:,} | "
            f"{run['turns_per_s']:.1f} | {_fmt(lat['p50'])} / {_fmt(lat['p99'])} | {_fmt(over['p50'])} / {_fmt(over['p99'])} | "
            f"{_errors_text(run)} | {stored} | {lost} | {'+'.join(f'{p:.0f}' for p in cpu['daphne_pct'])} / {cpu['client_pct']:.0f} / "
            f"{_fmt(cpu.get('services_pct'))} / {_fmt(cpu['other_pct'])} | {_fmt(cpu.get('daphne_ms_per_turn'), 1)} |"
        )
    return lines


def render_connect_table(runs: list[dict]) -> list[str]:
    lines = [
        "| consumer | N | ramped (200/s): failed | ramped: open p50 / p99 (ms) | ramped: ready p50 / p99 (ms) | burst: failed | burst: open p50 / p99 (ms) | burst: ready p50 / p99 (ms) | RSS before → idle → end (MB) | RSS per idle connection (KB) |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        if "failed" in run or "skipped" in run:
            continue
        ramp, burst, rss = run["ramp"], run["burst"], run["rss_kb"]
        lines.append(
            f"| {_consumer_label(run)} | {run['n']:,} | {_failures_text(ramp)} | "
            f"{_fmt(ramp['open_ms']['p50'])} / {_fmt(ramp['open_ms']['p99'])} | {_fmt(ramp['ready_ms']['p50'])} / {_fmt(ramp['ready_ms']['p99'])} | "
            f"{_failures_text(burst)} | {_fmt(burst['open_ms']['p50'])} / {_fmt(burst['open_ms']['p99'])} | "
            f"{_fmt(burst['ready_ms']['p50'])} / {_fmt(burst['ready_ms']['p99'])} | "
            f"{rss['before'] / 1024:.1f} → {rss['idle'] / 1024:.1f} → {rss['end'] / 1024:.1f} | {_fmt(run['rss_per_idle_kb'], 1)} |"
        )
    return lines


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**MISSED**")


def render_targets(all_runs: list[dict]) -> list[str]:
    ok_runs = [r for r in all_runs if "failed" not in r and "skipped" not in r]
    chat = [r for r in ok_runs if r["consumer"] == "chat" and r["scenario"] in ("a", "b", "c")]
    lines = ["| target (issue text) | measured | verdict |", "|---|---|---|"]

    one_k = [r for r in chat if r["n"] >= TARGET_CONVERSATIONS and r["processes"] == 1]
    if one_k:
        parts, ok = [], True
        for r in one_k:
            unstored = r["turns_done"] - r["answered_turns_stored"]
            errors = sum(r["turn_errors"].values()) + r["short_streams"] + r["turns_skipped"] + (r["ramp"]["attempted"] - r["ramp"]["ready"])
            parts.append(
                f"{r['name']}: {errors} errors (turn timeouts, error frames, closes, turns not run, failed connections); "
                f"{r['stored_complete']:,} / {r['stored_nominal']:,} messages "
                f"stored complete; {unstored} answered turns not stored; burst: {r['burst']['ready']:,} / {r['n']:,} connected"
            )
            ok = ok and errors == 0 and unstored == 0 and r["stored_complete"] == r["stored_nominal"]
        lines.append(f"| {TARGET_CONVERSATIONS:,} concurrent conversations on one daphne process, zero errors, zero lost messages | {'; '.join(parts)} | {_verdict(ok)} |")
    at = [r for r in chat if r["n"] == TARGET_OVERHEAD_AT and r["processes"] == 1]
    if at:
        ok = all(r["overhead_ms"]["p99"] is not None and r["overhead_ms"]["p99"] <= TARGET_OVERHEAD_P99_MS for r in at)
        measured = "; ".join(f"{r['name']}: {_fmt(r['overhead_ms']['p99'])} ms" for r in at)
        lines.append(f"| p99 server overhead ≤ {TARGET_OVERHEAD_P99_MS:.0f} ms at {TARGET_OVERHEAD_AT} conversations | {measured} | {_verdict(ok)} |")
    rss = [r for r in chat if r["rss_per_idle_kb"] is not None]
    if rss:
        worst = max(r["rss_per_idle_kb"] for r in rss)
        measured = "; ".join(f"{r['name']}: {r['rss_per_idle_kb']:.1f}" for r in rss)
        lines.append(f"| RSS ≤ {TARGET_RSS_KB:.0f} KB per idle connection | {measured} (KB) | {_verdict(worst <= TARGET_RSS_KB)} |")
    ratios = _ratios(ok_runs)
    if ratios:
        ok = all(ratio >= TARGET_RATIO for _, ratio, _, _ in ratios)
        measured = "; ".join(f"N={n:,}: {ratio:.2f} ({ours:.1f} / {bare:.1f} turns/s)" for n, ratio, ours, bare in ratios)
        lines.append(f"| turns/s ≥ {TARGET_RATIO} × the bare baseline's (SQLite, one process) | {measured} | {_verdict(ok)} |")
    return lines


def _ratios(runs: list[dict], baseline: str = "bare") -> list[tuple[int, float, float, float]]:
    out = []
    by = {(r["consumer"], r["n"]): r for r in runs if r.get("scenario") == "a"}
    for (consumer, n), run in sorted(by.items(), key=lambda kv: kv[0][1]):
        bare = by.get((baseline, n))
        if consumer == "chat" and bare and bare["turns_per_s"]:
            out.append((n, run["turns_per_s"] / bare["turns_per_s"], run["turns_per_s"], bare["turns_per_s"]))
    return out


def _machine_lines(groups: list[dict], command: str, nofile: Any) -> list[str]:
    import channels
    import daphne
    import django
    import langchain_core
    import websockets

    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        match = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        os_name = match.group(1) if match else platform.platform()
    except OSError:
        os_name = platform.platform()
    try:
        revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "pyhub_ai"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        revision = f"{revision}{' + uncommitted changes in pyhub_ai/' if dirty else ''}" if revision else "?"
    except (OSError, subprocess.SubprocessError):
        revision = "?"
    rows = [
        ("Command", f"`{command}`"),
        ("pyhub_ai revision", revision),
        ("Date", time.strftime("%Y-%m-%d %H:%M %Z")),
        ("Machine", f"{os_name}; `nproc` = {os.cpu_count()}; {cpu}"),
        ("Python / Django / Channels / daphne", f"{platform.python_version()} / {django.get_version()} / {channels.__version__} / {daphne.__version__}"),
        ("langchain-core / websockets (client)", f"{langchain_core.__version__} / {websockets.__version__}"),
        ("Open files (soft, hard)", f"{nofile[0]}, {nofile[1]}"),
    ]
    for group in groups:
        if group.get("server_version") == "?":
            continue
        if group["vendor"] == "sqlite":
            rows.append(("SQLite", f"{group['server_version']} (WAL, synchronous=NORMAL, BEGIN IMMEDIATE, timeout 20 s; {group.get('connections', '?')})"))
        else:
            rows.append(("PostgreSQL + Redis", f"{group['server_version']} (throwaway local cluster, fsync=off; {group.get('connections', '?')}) + redis-server (channel layer and cache)"))
        if group.get("variant"):
            rows.append((f"Experiment ({group['group']})", f"PYHUB_AI_BENCH_LOAD_VARIANT={group['variant']}"))
    return ["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]


def render(groups: list[dict], command: str, elapsed: float, turns: int) -> str:
    runs = [r for g in groups for r in g["runs"]]
    lines = [
        "# Websocket load: concurrent conversations on real daphne processes",
        "",
        f"Produced by `bench/ws_load.py`. N conversations, each its own owner-less conversation and websocket, do "
        f"T = {turns} turns each against `python -m daphne -e tcp:port=P:interface=127.0.0.1:backlog=2048 "
        f"bench.load_asgi:application`. The model is fake: {TOKENS} tokens, {PACE * 1000:.0f} ms apart "
        f"({MODEL_TIME * 1000:.0f} ms of model time per reply). The **baseline** is a bare channels "
        "`AsyncJsonWebsocketConsumer` sending the same frames at the same pace and storing nothing; the second "
        "baseline (**bare + LangChain model**) is the same consumer with the tokens streamed by the same fake model "
        "through LangChain's `astream`. "
        "The client (`websockets`, one asyncio process on the same machine) opens the N connections "
        f"ramped at {RAMP_RATE}/s, waits for `welcome` + `history`, measures daphne's RSS with all N idle, then every "
        f"connection waits a random 0–{MODEL_TIME:.0f} s and runs its turns back to back. "
        "**Turn** = send `user_message` → receive `stream_end`; **overhead** = turn − model time. "
        "turns/s = completed turns / (first send → last `stream_end`). Afterwards the N connections are closed "
        "and N new ones are opened in one **burst** (daphne drops handshakes not accepted within 5 s). "
        "**Stored** counts `complete` `ConversationMessage` rows of the run (expected N × T × 2). "
        "CPU: % of one core during the turn phase, for daphne, the client, PostgreSQL (all backends) + Redis, and "
        f"everything else on the machine (not part of the benchmark); the machine has {os.cpu_count()} cores ({100 * (os.cpu_count() or 1)}%).",
    ]
    for key, title in SCENARIO_TITLES.items():
        scenario = [r for r in runs if r.get("scenario") == key]
        if not scenario:
            continue
        lines += ["", f"## {title}", "", "Turns:", "", *render_turn_table(scenario), "", "Connections and memory:", "", *render_connect_table(scenario)]
        if key == "a":
            ratios = _ratios(scenario)
            if ratios:
                lines += ["", f"Ratio turns/s pyhub_ai ÷ baseline (target ≥ {TARGET_RATIO}):", ""]
                lines += [f"- N = {n:,}: **{ratio:.2f}** ({ours:.1f} ÷ {bare:.1f})" for n, ratio, ours, bare in ratios]
            model_ratios = _ratios(scenario, baseline="model")
            if model_ratios:
                lines += ["", "For comparison, pyhub_ai ÷ the bare consumer streaming the same model through LangChain (what any LangChain-based consumer pays; not the target):", ""]
                lines += [f"- N = {n:,}: {ratio:.2f} ({ours:.1f} ÷ {bare:.1f})" for n, ratio, ours, bare in model_ratios]
    busy = [r for r in runs if r.get("cpu", {}).get("other_pct") is not None and r["cpu"]["other_pct"] > OTHER_CPU_WARNING]
    if busy:
        lines += [
            "",
            f"**Warning: the machine was not idle.** Processes that are not part of this benchmark used more than {OTHER_CPU_WARNING:.0f}% of a core during "
            + ", ".join(f"{r['name']} ({r['cpu']['other_pct']:.0f}%)" for r in busy)
            + ". Latencies and turns/s of those runs are pessimistic; the CPU time per turn is not affected much.",
        ]
    lines += ["", "## Targets", "", *render_targets(runs)]
    errors = [r for r in runs if r.get("daphne_log_errors")]
    if errors:
        lines += ["", "Tracebacks in daphne's log:", ""]
        for run in errors:
            lines += [f"- {run['name']}: {run['daphne_log_errors']} (last lines below)", "", "```", run["daphne_log_tail"], "```"]
    nofile = next((g["nofile"] for g in groups), resource.getrlimit(resource.RLIMIT_NOFILE))
    lines += ["", "## Machine", "", *_machine_lines(groups, command, nofile), "", f"Websocket load run time: {elapsed:.0f} s.", ""]
    return "\n".join(lines)


def _short_function(frame: str) -> str:
    """'func (path/to/site-packages/pkg/mod.py:12)' -> 'func (pkg/mod.py:12)'."""
    match = re.match(r"(.*) \((.*):(\d+)\)$", frame)
    if not match:
        return frame
    name, path, line = match.groups()
    for marker in ("site-packages/", "/lib/python3", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib/python3"):
                path = "stdlib/" + path.split("/", 1)[1]
            break
    return f"{name} ({path}:{line})"


#: (label, a substring of a frame, or "thread:" + a substring of the thread's name) for the
#: component table of profile.md: the share of samples with such a frame on the stack.
PROFILE_COMPONENTS = [
    ("Event-loop thread (daphne, channels, the consumers)", "thread:MainThread"),
    ("ORM thread (every query: asgiref's single sync_to_async thread)", "thread:ThreadPoolExecutor"),
    ("… close_old_connections() (channels, around every consumer event)", "close_old_connections ("),
    ("… opening database connections", "get_new_connection ("),
    ("… COMMIT", "._commit ("),
    ("Consumer dispatch (client frames and channel-layer events)", "await_many_dispatch ("),
    ("Relaying turn frames to the thread's group (group_send)", ".group_send ("),
    ("Sending frames to the socket (send_json → daphne → autobahn)", ".send_json ("),
    ("LangChain BaseChatModel.astream (around the fake model)", "BaseChatModel.astream ("),
    ("Merging reply chunks (AIMessageChunk.__add__)", "AIMessageChunk.__add__ ("),
    ("Access check on every frame (check_access)", ".check_access ("),
    ("Model-call metering (admit_model_call)", "admit_model_call ("),
    ("Thread lock (thread_lock)", "thread_lock ("),
    ("Stored message → message object (message_object)", "message_object ("),
]


def render_profile(run: dict, raw: Path, kept_name: str, top: int = 15, parts: list = PROFILE_COMPONENTS) -> str:
    components: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    by_thread: collections.Counter = collections.Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread ")), "?")
        functions = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not functions:
            continue
        samples += count
        by_thread[thread] += count
        for label, needle in parts:
            if needle.startswith("thread:"):
                hit = needle[len("thread:"):] in thread
            else:
                hit = any(needle in function for function in functions)
            if hit:
                components[label] += count
        own[_short_function(functions[-1])] += count
        for function in set(functions):
            total[_short_function(function)] += count
    if not samples:
        return "# Profile\n\npy-spy recorded no samples.\n"
    lines = [
        f"# Profile of daphne during {run['name']}",
        "",
        f"`py-spy record --rate 200 --function --threads --nonblocking --duration {PROFILE_SECONDS}` attached to the "
        f"daphne process while {run['n']} connections ran turns (pyhub_ai consumer, SQLite + in-memory layer). "
        f"{samples:,} samples of non-idle threads (idle threads, e.g. the event loop waiting in epoll, are not "
        f"sampled). Raw collapsed stacks: `{kept_name}` beside this file (gunzip it; speedscope and flamegraph.pl read it). "
        f"That run: {run['turns_per_s']:.1f} turns/s, overhead p50 {_fmt(run['overhead_ms']['p50'])} ms / "
        f"p99 {_fmt(run['overhead_ms']['p99'])} ms, daphne CPU {run['cpu']['daphne_pct'][0]:.0f}%.",
        "",
        "Samples per thread:",
        "",
        "| thread | samples | share |",
        "|---|---:|---:|",
    ]
    lines += [f"| {t} | {c:,} | {100 * c / samples:.1f}% |" for t, c in by_thread.most_common()]
    lines += ["", "Share of samples by component (a sample counts for every component on its stack):", "", "| component | share |", "|---|---:|"]
    lines += [f"| {label} | {100 * components[label] / samples:.1f}% |" for label, _ in parts]
    lines += ["", f"Top {top} functions by own time (the frame on top of the stack):", "", "| # | function | own samples | own % | incl. % |", "|---:|---|---:|---:|---:|"]
    for rank, (name, count) in enumerate(own.most_common(top), 1):
        lines.append(f"| {rank} | `{name}` | {count:,} | {100 * count / samples:.1f}% | {100 * total[name] / samples:.1f}% |")
    lines += ["", f"Top {top} functions by inclusive time (on the stack), pyhub_ai / Django / channels / daphne / LangChain only:", "", "| # | function | incl. % |", "|---:|---|---:|"]
    interesting = [
        (name, count) for name, count in total.most_common()
        if any(key in name for key in ("pyhub_ai/", "django/", "channels/", "daphne/", "langchain_core/", "asgiref/", "autobahn/"))
    ]  # fmt: skip
    for rank, (name, count) in enumerate(interesting[:top], 1):
        lines.append(f"| {rank} | `{name}` | {100 * count / samples:.1f}% |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ws_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="sqlite,postgres,two", help="sqlite, postgres, two (comma-separated; default: all)")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SQLITE_SIZES)), help="N for the SQLite scenario (default: 100,500,1000)")
    parser.add_argument("--turns", type=int, default=DEFAULT_TURNS, help=f"turns per conversation (default: {DEFAULT_TURNS})")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy run")
    parser.add_argument("--profile-n", type=int, default=PROFILE_N, help=f"connections of the py-spy run (default: {PROFILE_N})")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help=f"seconds for all runs; runs that do not fit are skipped (default: {DEFAULT_BUDGET})")
    parser.add_argument("--output", type=Path, default=LOAD_RESULTS, help="the markdown report (default: bench/results/load.md)")
    parser.add_argument("--worker", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = run_worker(args.worker, json.loads(Path(args.spec).read_text()))
        Path(args.json).write_text(json.dumps(result))
        return 0

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - {"sqlite", "postgres", "two"}
    if unknown or not scenarios:
        parser.error(f"--scenarios takes sqlite, postgres and/or two, not {','.join(sorted(unknown)) or 'nothing'}")
    if {"postgres", "two"} & set(scenarios) and not (os.environ.get("PYHUB_AI_BENCH_POSTGRES_URL") and os.environ.get("PYHUB_AI_BENCH_REDIS_URL")):
        parser.error(
            "PYHUB_AI_BENCH_POSTGRES_URL and PYHUB_AI_BENCH_REDIS_URL must be set for the postgres and two scenarios: "
            "run `make bench` (it starts throwaway servers), or pass --scenarios sqlite."
        )
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(n < 1 or n > 2000 for n in sizes) or not 1 <= args.turns <= 20:
        parser.error("sizes must be 1..2000 and --turns 1..20")
    command = os.environ.get("PYHUB_AI_BENCH_COMMAND") or "python -m bench.ws_load " + " ".join(argv if argv is not None else sys.argv[1:])
    raise_nofile_limit()

    started = time.perf_counter()
    # daphne's logs of the previous run are replaced (this run's stay in var/bench/ for reading).
    for old in [*VAR.glob("daphne-*.log"), *VAR.glob("profile-*.txt"), *VAR.glob("profile-*.log")]:
        old.unlink(missing_ok=True)
    deadline = time.time() + args.budget
    groups = []
    for group, runs in plan(scenarios, args.turns, sizes, None if args.no_profile else args.profile_n).items():
        print(f"==> websocket load, {group}: {', '.join(r['name'] for r in runs)}", flush=True)
        try:
            groups.append(_run_group(group, runs, deadline))
        except (subprocess.SubprocessError, OSError, ValueError) as exc:  # the other group still runs
            print(f"  the {group} worker FAILED: {exc!r}", flush=True)
            groups.append({"group": group, "vendor": group, "server_version": "?", "runs": [{**r, "failed": f"worker: {exc!r}"[:300]} for r in runs]})
    elapsed = time.perf_counter() - started

    main_groups = [{**g, "runs": [r for r in g["runs"] if r.get("scenario") != "profile"]} for g in groups]
    report = render(main_groups, command, elapsed, args.turns)
    print()
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(f"Wrote {args.output}")

    for run in (r for g in groups for r in g["runs"] if r.get("scenario") == "profile"):
        raw = Path(run["profile"])
        if "failed" in run or run.get("profile_error") or not raw.exists():
            print(f"The profile run failed: {run.get('failed') or run.get('profile_error') or 'no output'}")
            continue
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        kept = RESULTS_DIR / f"{raw.name}.gz"
        with open(raw, "rb") as source, gzip.open(kept, "wb") as target:
            shutil.copyfileobj(source, target)
        profile = render_profile(run, raw, kept.name)
        PROFILE_RESULTS.write_text(profile)
        print()
        print(profile)
        print(f"Wrote {PROFILE_RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
