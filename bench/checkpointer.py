"""Benchmark: LangGraph checkpointers, ours (``pyhub_ai.checkpoint.DjangoSaver``) vs. the official ones.

For each database (SQLite, PostgreSQL), each saver (``DjangoSaver``; ``SqliteSaver`` from
langgraph-checkpoint-sqlite on SQLite, ``PostgresSaver`` from langgraph-checkpoint-postgres on
PostgreSQL, on the same server) and each thread length N (10, 1,000 and 10,000 messages of ~200
characters), one thread is seeded with N messages in one ``update_state`` (one checkpoint), then
a real LangGraph graph (``MessagesState``, one node that answers) runs turns on it: 3 warm-up
turns, then K=30 timed ones, with ``durability="sync"``, round-robin over the sizes. Every
``put`` and ``get_tuple`` call the graph makes is timed inside the saver (a turn makes three
puts and one get_tuple). Bytes written per turn: what the turn added to the saver's tables for
the thread (checkpoint and metadata JSON, blobs, writes, and for ``DjangoSaver`` the message
rows' JSON), measured with SQL length functions before and after the timed turns. ``DjangoSaver`` keeps
recent message lists in memory; "get_tuple, new process" is its first read of the thread by a
fresh saver (3 samples).

Each saver runs in a worker process of its own (``python -m bench.checkpointer --worker ...``),
as a site runs one saver: when both ran in one process, each turn ran on the caches the other
saver's turn before it had filled, and the figures depended on the order of the turns
(DjangoSaver's put at N=10 was 1.9-2.4x SqliteSaver's with one fixed order, 1.6-1.7x with a
random one, for the same code). The two savers' workers run ``REPEATS`` times, alternating, and
each figure is the smaller of its runs (the machine's other work only adds time). The runner
writes the table to ``bench/results/checkpointer.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "checkpointer.md"
SIZES = (10, 1_000, 10_000)
TURNS = 30
WARMUP = 3
COLD_SAMPLES = 3
WORKER_TIMEOUT = 300
TARGET_VS_OFFICIAL = 1.5
TARGET_FLAT = 1.2
#: Runs of each saver's worker (alternating); each figure is the smaller of its runs.
REPEATS = 2
TEXT = "This is a benchmark message of about two hundred characters, the length of a short chat turn. " * 2


def _percentile(samples: list[float], percent: int) -> float:
    from bench.history_scaling import _percentile as percentile

    return percentile(samples, percent) if len(samples) > 1 else samples[0]


# ---- the worker (Django configured by bench.checkpointer_settings) ----------------------------------------


class _Timings:
    """Wraps a saver's ``put`` and ``get_tuple`` (on the instance) to time every call."""

    def __init__(self, saver: Any) -> None:
        self.calls: dict[str, list[float]] = {"put": [], "get_tuple": []}
        for name in self.calls:
            setattr(saver, name, self._timed(name, getattr(saver, name)))

    def _timed(self, name: str, method: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.calls[name].append((time.perf_counter() - started) * 1000)

        return timed

    def reset(self) -> None:
        for samples in self.calls.values():
            samples.clear()


def _graph(saver: Any) -> Any:
    from langchain_core.messages import AIMessage
    from langgraph.graph import START, MessagesState, StateGraph

    def reply(state: MessagesState) -> dict:
        return {"messages": [AIMessage(content=TEXT)]}

    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    return builder.compile(checkpointer=saver)


def _seed_messages(size: int) -> list:
    from langchain_core.messages import AIMessage, HumanMessage

    return [(HumanMessage if index % 2 == 0 else AIMessage)(content=f"{index}: {TEXT}") for index in range(size)]


def _ours_bytes(thread_id: str) -> int:
    from django.db.models import Sum, TextField
    from django.db.models.functions import Cast, Coalesce, Length

    from pyhub_ai.models import Checkpoint, CheckpointBlob, CheckpointWrite, ConversationMessage, GraphThread

    thread = GraphThread.objects.get(thread_id=thread_id)

    def total(queryset: Any, *expressions: Any) -> int:
        summed = sum((Coalesce(Length(expression), 0) for expression in expressions[1:]), Coalesce(Length(expressions[0]), 0))
        return queryset.aggregate(total=Sum(summed))["total"] or 0

    return (
        total(Checkpoint.objects.filter(thread=thread), Cast("checkpoint", TextField()), Cast("metadata", TextField()))
        + total(CheckpointBlob.objects.filter(thread=thread), "blob")
        + total(CheckpointWrite.objects.filter(thread=thread), "blob")
        + total(
            ConversationMessage.objects.filter(conversation_id=thread.conversation_id, user_id=thread.user_id, visitor_key=thread.visitor_key),
            Cast("content", TextField()),
        )
    )


def _official_bytes(saver: Any, db: str, thread_id: str) -> int:
    if db == "sqlite":
        statements = [
            "SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) FROM checkpoints WHERE thread_id = ?",
            "SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes WHERE thread_id = ?",
        ]
        return sum(saver.conn.execute(sql, (thread_id,)).fetchone()[0] for sql in statements)
    statements = [
        "SELECT COALESCE(SUM(octet_length(checkpoint::text) + octet_length(metadata::text)), 0) AS n FROM checkpoints WHERE thread_id = %s",
        "SELECT COALESCE(SUM(octet_length(blob)), 0) AS n FROM checkpoint_blobs WHERE thread_id = %s",
        "SELECT COALESCE(SUM(octet_length(blob)), 0) AS n FROM checkpoint_writes WHERE thread_id = %s",
    ]
    total = 0
    with saver.conn.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql, (thread_id,))
            total += int(cursor.fetchone()["n"])
    return total


def _official_savers(db: str) -> tuple[Callable[[], Any], Callable[[], None]]:
    """A factory of the official saver of ``db`` (all on one connection), and what closes it."""
    if db == "sqlite":
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        from bench.checkpointer_settings import SQLITE_PRAGMAS

        path = Path(os.environ["PYHUB_AI_BENCH_SQLITE_PATH"]).with_suffix(".official.sqlite3")
        connection = sqlite3.connect(path, check_same_thread=False)
        connection.executescript(SQLITE_PRAGMAS)
        return lambda: SqliteSaver(connection), connection.close
    import psycopg
    from django.db import connection as django_connection
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    params = django_connection.get_connection_params()
    for option in ("cursor_factory", "context", "prepare_threshold", "autocommit", "row_factory"):
        params.pop(option, None)
    connection = psycopg.connect(**params, autocommit=True, prepare_threshold=0, row_factory=dict_row)
    PostgresSaver(connection).setup()
    return lambda: PostgresSaver(connection), connection.close


class BenchThread:
    """One saver's thread of N messages, seeded in one ``update_state``, and its turns."""

    def __init__(self, name: str, saver: Any, db: str, size: int) -> None:
        self.name, self.saver, self.db, self.size = name, saver, db, size
        self.timings = _Timings(saver)
        self.graph = _graph(saver)
        self.thread_id = f"bench-{name}-{size}"
        self.config = {"configurable": {"thread_id": self.thread_id}}
        self.stored_before_timed_turns = 0
        self.written_per_turn = 0.0
        started = time.perf_counter()
        self.graph.update_state(self.config, {"messages": _seed_messages(size)}, as_node="reply")
        self.seed_s = time.perf_counter() - started

    def bytes_stored(self) -> int:
        return _ours_bytes(self.thread_id) if self.name == "ours" else _official_bytes(self.saver, self.db, self.thread_id)

    def turn(self, number: int) -> None:
        from langchain_core.messages import HumanMessage

        self.graph.invoke({"messages": [HumanMessage(content=f"turn {number}: {TEXT}")]}, self.config, durability="sync")

    def start_timing(self) -> None:
        """Called before the timed turns: forget the warm-up's timings, note the bytes stored."""
        self.timings.reset()
        self.stored_before_timed_turns = self.bytes_stored()

    def stop_timing(self, turns: int) -> None:
        """Called after the timed turns: the bytes they added, per turn. (Measured once before and
        once after them, not around each turn: the length queries read the whole thread, and
        when they ran between the timed turns they slowed the next turn's first read.)"""
        self.written_per_turn = (self.bytes_stored() - self.stored_before_timed_turns) / turns

    def result(self, turns: int) -> dict:
        result = {
            "saver": self.name,
            "size": self.size,
            "seed_s": self.seed_s,
            "bytes_per_turn": self.written_per_turn,
            **{f"{call}_p{p}": _percentile(samples, p) for call, samples in self.timings.calls.items() for p in (50, 95)},
            "calls_per_turn": {call: len(samples) / turns for call, samples in self.timings.calls.items()},
        }
        if self.name == "ours":
            from pyhub_ai.checkpoint import DjangoSaver

            cold = []
            for _ in range(COLD_SAMPLES):
                fresh = DjangoSaver()
                started = time.perf_counter()
                fresh.get_tuple(self.config)
                cold.append((time.perf_counter() - started) * 1000)
            result["get_tuple_cold_p50"] = _percentile(cold, 50)
        return result


def run_worker(db: str, saver_name: str, sizes: list[int], turns: int, warmup: int) -> dict:
    """Seeds a thread of each size for the saver ``saver_name`` (``ours`` or ``official``), then
    runs the turns round-robin over them."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from pyhub_ai.checkpoint import DjangoSaver

    call_command("migrate", verbosity=0, interactive=False)
    make_saver, close = (DjangoSaver, lambda: None) if saver_name == "ours" else _official_savers(db)
    try:
        threads = [BenchThread(saver_name, make_saver(), db, size) for size in sizes]
        for number in range(warmup + turns):
            for thread in threads:
                if number == warmup:
                    thread.start_timing()
                thread.turn(number)
        for thread in threads:
            thread.stop_timing(turns)
        results = [thread.result(turns) for thread in threads]
    finally:
        close()
    for result in results:
        print(
            f"  [{db}] {result['saver']:>8} N={result['size']:>6,}: put p50 {result['put_p50']:.2f} ms, get_tuple p50 "
            f"{result['get_tuple_p50']:.2f} ms, {result['bytes_per_turn'] / 1024:,.1f} KiB/turn",
            flush=True,
        )
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version" if connection.vendor == "postgresql" else "SELECT sqlite_version()")
        server_version = cursor.fetchone()[0]
    return {"db": db, "server_version": server_version, "turns": turns, "warmup": warmup, "results": results}


# ---- the runner (no Django here) ------------------------------------------------------------


def _run_worker(db: str, saver: str, sizes: list[int], turns: int, warmup: int) -> dict:
    from bench.history_scaling import worker_database

    env, cleanup = worker_database(db, "bench.checkpointer_settings", "checkpointer", "_checkpointer")
    try:
        with tempfile.NamedTemporaryFile("r", suffix=".json") as output:
            command = [
                sys.executable, "-m", "bench.checkpointer", "--worker", db, "--saver", saver, "--sizes", ",".join(map(str, sizes)),
                "--turns", str(turns), "--warmup", str(warmup), "--json", output.name,
            ]  # fmt: skip
            subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=WORKER_TIMEOUT)
            return json.load(output)
    finally:
        for step in cleanup:
            step()


def _run_database(db: str, sizes: list[int], turns: int, warmup: int) -> dict:
    """Both savers' workers, ``REPEATS`` times each, alternating; per saver and size, the smaller
    of each timing (bytes written do not vary)."""
    runs = [_run_worker(db, saver, sizes, turns, warmup) for _ in range(REPEATS) for saver in ("ours", "official")]
    best: dict[tuple[str, int], dict] = {}
    for run in runs:
        for result in run["results"]:
            key = (result["saver"], result["size"])
            if key not in best:
                best[key] = dict(result)
                continue
            for name, value in result.items():
                if name.endswith(("_p50", "_p95", "seed_s")):
                    best[key][name] = min(best[key][name], value)
    ordered = [best[(saver, size)] for size in sizes for saver in ("ours", "official")]
    return {**runs[0], "results": ordered}


def render(runs: list[dict], command: str, elapsed: float) -> str:
    label = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    official = {"sqlite": "SqliteSaver", "postgres": "PostgresSaver"}
    lines = [
        "# LangGraph checkpointers: DjangoSaver vs. the official savers",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"Each saver runs in a process of its own, {REPEATS} times (alternating with the other saver); each figure is the "
        "smaller of its runs.",
        "",
        "| Database | Saver | N messages | put p50 (ms) | put p95 (ms) | get_tuple p50 (ms) | get_tuple p95 (ms) | get_tuple, new process (ms) | written / turn (KiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for row in run["results"]:
            saver = "DjangoSaver" if row["saver"] == "ours" else official[run["db"]]
            cold = f"{row['get_tuple_cold_p50']:.2f}" if "get_tuple_cold_p50" in row else "–"
            lines.append(
                f"| {label[run['db']]} {run['server_version']} | {saver} | {row['size']:,} | {row['put_p50']:.2f} | "
                f"{row['put_p95']:.2f} | {row['get_tuple_p50']:.2f} | {row['get_tuple_p95']:.2f} | {cold} | "
                f"{row['bytes_per_turn'] / 1024:,.1f} |"
            )
    lines += ["", "Ratios of p50 (targets: DjangoSaver ≤ "
              f"{TARGET_VS_OFFICIAL}× the official saver at the smallest N; largest N / smallest N ≤ {TARGET_FLAT}):", ""]  # fmt: skip
    for run in runs:
        rows = {(row["saver"], row["size"]): row for row in run["results"]}
        small, large = min(row["size"] for row in run["results"]), max(row["size"] for row in run["results"])
        for call in ("put", "get_tuple"):
            versus = rows[("ours", small)][f"{call}_p50"] / rows[("official", small)][f"{call}_p50"]
            ours_flat = rows[("ours", large)][f"{call}_p50"] / rows[("ours", small)][f"{call}_p50"]
            theirs_flat = rows[("official", large)][f"{call}_p50"] / rows[("official", small)][f"{call}_p50"]
            lines.append(
                f"- {label[run['db']]} `{call}`: DjangoSaver / {official[run['db']]} at N={small:,} = **{versus:.2f}**; "
                f"N={large:,} / N={small:,}: DjangoSaver **{ours_flat:.2f}**, {official[run['db']]} {theirs_flat:.2f}"
            )
        ours_bytes = rows[("ours", large)]["bytes_per_turn"] / rows[("ours", small)]["bytes_per_turn"]
        theirs_bytes = rows[("official", large)]["bytes_per_turn"] / rows[("official", small)]["bytes_per_turn"]
        lines.append(
            f"- {label[run['db']]} bytes written per turn, N={large:,} / N={small:,}: DjangoSaver **{ours_bytes:.2f}**, "
            f"{official[run['db']]} {theirs_bytes:.1f}"
        )
    calls = runs[0]["results"][0]["calls_per_turn"]
    lines += [
        "",
        f"Calls per turn: {calls['put']:.0f} put, {calls['get_tuple']:.0f} get_tuple. Seeding (one update_state of N messages, "
        "not in the table): "
        + "; ".join(
            f"{label[run['db']]} {'DjangoSaver' if row['saver'] == 'ours' else official[run['db']]} "
            f"{row['size']:,} in {row['seed_s']:.2f} s"
            for run in runs
            for row in run["results"]
            if row["size"] == max(r["size"] for r in run["results"])
        ),
        "",
        f"Command: `{command}`; {time.strftime('%Y-%m-%d %H:%M %Z')}; run time {elapsed:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench.history_scaling import add_thread_options

    parser = argparse.ArgumentParser(prog="python -m bench.checkpointer", description=__doc__.split("\n\n")[0])
    add_thread_options(parser, sizes=SIZES, turns=TURNS, warmup=WARMUP, output=RESULTS)
    parser.add_argument("--saver", choices=["ours", "official"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.turns < 2:
        parser.error("--turns must be at least 2")
    if args.worker:
        Path(args.json).write_text(json.dumps(run_worker(args.worker, args.saver, args.sizes, args.turns, args.warmup)))
        return 0
    command = os.environ.get("PYHUB_AI_BENCH_COMMAND") or shlex.join(["python", "-m", "bench.checkpointer", *(argv or [])])
    started = time.perf_counter()
    runs = []
    for db in [db.strip() for db in args.db.split(",") if db.strip()]:
        print(f"==> checkpointers on {db}: N = {', '.join(f'{n:,}' for n in args.sizes)}", flush=True)
        runs.append(_run_database(db, args.sizes, args.turns, args.warmup))
    report = render(runs, command, time.perf_counter() - started)
    print()
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
