"""Benchmark: does the server time of one chat turn grow with the length of the thread?

For each database (SQLite, PostgreSQL) and each thread length N (10, 1,000 and 100,000 stored
messages), one thread is filled with N alternating human/AI messages (``bulk_create`` in
batches of 5,000, content encoded by ``ConversationMessage.from_message``). Then a
``WebsocketCommunicator`` drives turns through the real path — a subclass of
``pyhub_ai.consumers.AgentChatConsumer`` whose model (``GenericFakeChatModel``) answers a short
reply at once — and the wall time from sending ``user_message`` to receiving ``stream_end`` is
measured: 3 warm-up turns, then K=30 timed turns. After each turn the rows it added are
deleted (not timed), so every turn sees exactly N stored messages. One more turn is run with
``CaptureQueriesContext`` on the connection of the async ORM's worker thread, to count its SQL
queries (from sending the message until the turn's task has ended).

Each database runs in its own worker process (Django is configured once per process):
``python -m bench`` is the runner; ``python -m bench.history_scaling --worker ...`` the worker.
The runner prints the table and writes it to ``bench/results/latest.md``.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.md"
DEFAULT_SIZES = (10, 1_000, 100_000)
DEFAULT_TURNS = 30
DEFAULT_WARMUP = 3
BATCH_SIZE = 5_000
TARGET_RATIO = 1.2
WORKER_TIMEOUT = 150  # seconds per database; the whole run stays well under 3 minutes
REPLY = "Sure, here is a short answer."


# ---- the worker (one database, Django configured) ----------------------------------------------


def _message_text(index: int) -> str:
    return f"Message {index}: a stored line of an old conversation, long enough to look like one."


def seed_thread(user: Any, size: int) -> tuple[Any, int]:
    """A conversation owned by ``user`` with ``size`` alternating human/AI messages; returns
    ``(conversation, pk of its last message)``."""
    from django.db import transaction
    from langchain_core.messages import AIMessage, HumanMessage

    from pyhub_ai.models import Conversation, ConversationMessage

    with transaction.atomic():
        conversation = Conversation.objects.create(user=user, title=f"bench thread of {size:,} messages")
        batch: list[ConversationMessage] = []
        for index in range(size):
            message = HumanMessage(content=_message_text(index)) if index % 2 == 0 else AIMessage(content=_message_text(index))
            batch.append(ConversationMessage.from_message(message, conversation=conversation, user=user))
            if len(batch) == BATCH_SIZE:
                ConversationMessage.objects.bulk_create(batch)
                batch = []
        if batch:
            ConversationMessage.objects.bulk_create(batch)
    last_pk = ConversationMessage.objects.filter(conversation=conversation).order_by("-pk").values_list("pk", flat=True)[0]
    return conversation, last_pk


class WorkerThreadQueries:
    """``CaptureQueriesContext`` on the connection the async ORM uses.

    Async code runs the ORM in asgiref's thread-sensitive worker thread, which has its own
    connection; the context is entered, exited and read in that thread.
    """

    async def __aenter__(self) -> WorkerThreadQueries:
        from asgiref.sync import sync_to_async
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        self._context = CaptureQueriesContext(connection)
        await sync_to_async(self._context.__enter__)()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(self._context.__exit__)(*exc_info)
        self.queries: list[str] = await sync_to_async(lambda: [q["sql"] for q in self._context.captured_queries])()


async def _receive_until(communicator: Any, frame_type: str, timeout: float = 10) -> dict:
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame["type"] == frame_type:
            return frame
        if frame["type"] == "error":
            raise RuntimeError(f"The consumer sent an error frame: {frame}")


async def _connect(application: Any, conversation: Any, user: Any) -> Any:
    from channels.testing import WebsocketCommunicator

    communicator = WebsocketCommunicator(application, f"/ws/bench/{conversation.pk}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=10)
    if not connected:
        raise RuntimeError("The bench consumer refused the connection.")
    await _receive_until(communicator, "history")
    return communicator


async def _timed_turn(communicator: Any, text: str) -> float:
    started = time.perf_counter()
    await communicator.send_json_to({"type": "user_message", "text": text})
    await _receive_until(communicator, "stream_end")
    return time.perf_counter() - started


async def _trim(conversation: Any, last_pk: int) -> None:
    """Delete the rows the benchmark's turns added, so the thread has N messages again."""
    from pyhub_ai.models import ConversationMessage

    await ConversationMessage.objects.filter(conversation=conversation, pk__gt=last_pk).adelete()


def _percentile(samples: list[float], percent: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[percent - 1]


async def measure_thread(application: Any, model: Any, conversation: Any, user: Any, last_pk: int, turns: int, warmup: int) -> dict:
    communicator = await _connect(application, conversation, user)
    samples = []
    for index in range(warmup + turns):
        elapsed = await _timed_turn(communicator, f"Question {index}?")
        await _trim(conversation, last_pk)
        if index >= warmup:
            samples.append(elapsed)
    prompt_messages = model.last_prompt_length
    await communicator.disconnect()

    # The SQL queries of one turn: from sending the message until the turn's task has ended
    # (disconnect() waits for it; connecting is not counted).
    communicator = await _connect(application, conversation, user)
    async with WorkerThreadQueries() as captured:
        await _timed_turn(communicator, "One more question?")
        await communicator.disconnect()
    await _trim(conversation, last_pk)
    if not any("INSERT" in sql.upper() and "pyhub_ai_conversationmessage" in sql for sql in captured.queries):
        raise RuntimeError(f"The query capture missed the turn's INSERT: {captured.queries}")

    return {
        "samples_ms": [s * 1000 for s in samples],
        "p50_ms": statistics.median(samples) * 1000,
        "p95_ms": _percentile(samples, 95) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
        "min_ms": min(samples) * 1000,
        "max_ms": max(samples) * 1000,
        "prompt_messages": prompt_messages,
        "queries": captured.queries,
    }


def run_worker(db: str, sizes: list[int], turns: int, warmup: int) -> dict:
    """Runs in a process whose DJANGO_SETTINGS_MODULE is bench.settings."""
    import django

    django.setup()

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    migrate_s = time.perf_counter() - started

    from channels.routing import URLRouter
    from django.urls import path
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from pyhub_ai.consumers import AgentChatConsumer

    class InstantFakeChatModel(GenericFakeChatModel):
        """Answers ``REPLY`` at once, word by word; remembers how long the last prompt was."""

        last_prompt_length: int = 0

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            self.last_prompt_length = len(messages)
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    model = InstantFakeChatModel(messages=itertools.cycle([AIMessage(content=REPLY)]))

    class BenchChatConsumer(AgentChatConsumer):
        llm_model = "openai:gpt-4o-mini"  # never built: get_llm() returns the fake model

        def get_llm(self):
            return model

    application = URLRouter([path("ws/bench/<int:conversation_pk>/", BenchChatConsumer.as_asgi())])

    user = get_user_model().objects.create_user(username=f"bench-{os.getpid()}", password="bench-pass-123")
    threads = []
    for size in sizes:
        started = time.perf_counter()
        conversation, last_pk = seed_thread(user, size)
        seed_s = time.perf_counter() - started
        print(f"  [{db}] stored {size:,} messages in {seed_s:.1f} s", flush=True)
        threads.append((size, conversation, last_pk, seed_s))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # what autovacuum does after a bulk load
            cursor.execute("ANALYZE")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
        else:
            cursor.execute("SELECT sqlite_version()")
        server_version = cursor.fetchone()[0]
    connection.close()  # the measuring happens in the async ORM's worker thread

    async def measure_all() -> list[dict]:
        results = []
        for size, conversation, last_pk, seed_s in threads:
            result = await measure_thread(application, model, conversation, user, last_pk, turns, warmup)
            result.update(size=size, seed_s=seed_s)
            print(
                f"  [{db}] N={size:>7,}: p50 {result['p50_ms']:.2f} ms, p95 {result['p95_ms']:.2f} ms, "
                f"{len(result['queries'])} queries per turn",
                flush=True,
            )
            results.append(result)
        return results

    sizes_results = asyncio.run(measure_all())
    return {
        "db": db,
        "vendor": connection.vendor,
        "server_version": server_version,
        "migrate_s": migrate_s,
        "turns": turns,
        "warmup": warmup,
        "sizes": sizes_results,
    }


# ---- the runner (no Django here) ------------------------------------------------------------


def _postgres_admin(url: str):
    import environ
    import psycopg

    config = environ.Env.db_url_config(url)
    return config, psycopg.connect(
        host=config.get("HOST") or None,
        port=config.get("PORT") or None,
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


def create_throwaway_database(url: str, kind: str = "") -> tuple[str, Callable[[], None]]:
    """A database of its own on the PostgreSQL server at ``url``, so that existing data is never
    touched; returns its name and the function that drops it. Used by both benchmarks."""
    config, admin = _postgres_admin(url)
    name = f"{config.get('NAME') or 'pyhub_ai'}{kind}_{os.getpid()}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.execute(f'CREATE DATABASE "{name}"')

    def drop_database() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return name, drop_database


def worker_database(db: str, settings: str, prefix: str, kind: str = "") -> tuple[dict[str, str], list[Callable[[], None]]]:
    """The environment of a benchmark worker process (Django ``settings``) on a throwaway
    database: a SQLite file ``var/bench/<prefix>-<pid>.sqlite3`` (its files, ``<prefix>-<pid>.*``,
    are removed before and after), or a database of its own on the PostgreSQL server of
    ``PYHUB_AI_BENCH_POSTGRES_URL``; and the steps that remove it. Used by the history and
    checkpointer benchmarks."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings, "PYHUB_AI_BENCH_DB": db, "PYTHONPATH": str(ROOT)}
    if db == "sqlite":
        directory = ROOT / "var" / "bench"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{prefix}-{os.getpid()}.sqlite3"
        env["PYHUB_AI_BENCH_SQLITE_PATH"] = str(path)

        def remove_files() -> None:
            for file in directory.glob(f"{path.stem}.*"):
                file.unlink(missing_ok=True)

        remove_files()
        return env, [remove_files]
    url = os.environ.get("PYHUB_AI_BENCH_POSTGRES_URL")
    if not url:
        raise SystemExit(
            "PYHUB_AI_BENCH_POSTGRES_URL is not set: run `make bench` (it starts a throwaway "
            "PostgreSQL), set it to a server, or pass --db sqlite."
        )
    name, drop_database = create_throwaway_database(url, kind)
    env["PYHUB_AI_BENCH_POSTGRES_NAME"] = name
    return env, [drop_database]


def _run_database(db: str, sizes: list[int], turns: int, warmup: int) -> dict:
    env, cleanup = worker_database(db, "bench.settings", "bench")
    try:
        with tempfile.NamedTemporaryFile("r", suffix=".json") as output:
            command = [
                sys.executable, "-m", "bench.history_scaling", "--worker", db,
                "--sizes", ",".join(map(str, sizes)), "--turns", str(turns), "--warmup", str(warmup),
                "--json", output.name,
            ]  # fmt: skip
            subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=WORKER_TIMEOUT)
            return json.load(output)
    finally:
        for step in cleanup:
            step()


def _machine_info(results: list[dict], command: str) -> list[tuple[str, str]]:
    import channels
    import django
    import langchain_core
    import sqlite3

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    os_name = platform.platform()
    try:
        match = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        os_name = match.group(1) if match else os_name
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    by_db = {r["db"]: r for r in results}
    info = [
        ("Command", f"`{command}`"),
        ("Date", time.strftime("%Y-%m-%d %H:%M %Z")),
        ("Machine", f"{os_name}; `nproc` = {nproc}; {cpu}"),
        ("Python", platform.python_version()),
        ("Django", django.get_version()),
        ("Channels", channels.__version__),
        ("langchain-core", langchain_core.__version__),
        ("SQLite", by_db["sqlite"]["server_version"] if "sqlite" in by_db else sqlite3.sqlite_version),
    ]
    if "postgres" in by_db:
        info.append(("PostgreSQL", f"{by_db['postgres']['server_version']} (throwaway local cluster, fsync=off)"))
    return info


def _short_sql(sql: str, limit: int = 400) -> str:
    """One line: no table prefixes on column names, long string literals elided."""
    sql = re.sub(r"\s+", " ", sql)
    sql = re.sub(r'"pyhub_ai_\w+"\.(?=")', "", sql)
    sql = re.sub(r"'(?:[^']|'')*'", lambda m: m.group(0) if len(m.group(0)) <= 40 else "'…'", sql)
    return sql if len(sql) <= limit else sql[: limit - 1] + "…"


def render(results: list[dict], command: str, elapsed: float) -> str:
    label = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    lines = [
        "# History scaling: server time of one chat turn vs. stored thread length",
        "",
        "Wall time from sending `user_message` to receiving `stream_end`, through "
        "`WebsocketCommunicator` and a subclass of `pyhub_ai.consumers.AgentChatConsumer` with a fake "
        f"model that answers at once (\"{REPLY}\"). Per database and thread length N: "
        f"{results[0]['warmup']} warm-up turns, then {results[0]['turns']} timed turns, each with exactly N "
        "messages stored in the thread (the rows a turn adds are deleted after it, untimed). "
        "Queries: the SQL statements of one turn (from the message until the turn's task ends), "
        "captured on the async ORM's connection. Produced by `bench/history_scaling.py`.",
        "",
        "| Database | N stored | p50 (ms) | p95 (ms) | mean (ms) | min (ms) | max (ms) | queries / turn | prompt messages |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for row in result["sizes"]:
            lines.append(
                f"| {label[result['db']]} | {row['size']:,} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
                f"{row['mean_ms']:.2f} | {row['min_ms']:.2f} | {row['max_ms']:.2f} | {len(row['queries'])} | "
                f"{row['prompt_messages']} |"
            )
    lines += ["", f"Ratio p50(largest N) / p50(smallest N), target ≤ {TARGET_RATIO}:", ""]
    for result in results:
        rows = sorted(result["sizes"], key=lambda r: r["size"])
        ratio = rows[-1]["p50_ms"] / rows[0]["p50_ms"]
        verdict = "within target" if ratio <= TARGET_RATIO else "ABOVE TARGET"
        line = f"- {label[result['db']]}: p50({rows[-1]['size']:,}) / p50({rows[0]['size']:,}) = **{ratio:.2f}** ({verdict})"
        # The smallest thread also has a shorter prompt window; this ratio isolates the thread length.
        same_window = next((r for r in rows[1:-1] if r["prompt_messages"] == rows[-1]["prompt_messages"]), None)
        if same_window is not None and rows[0]["prompt_messages"] != rows[-1]["prompt_messages"]:
            line += (
                f"; with the same prompt size ({rows[-1]['prompt_messages']} messages): p50({rows[-1]['size']:,}) / "
                f"p50({same_window['size']:,}) = {rows[-1]['p50_ms'] / same_window['p50_ms']:.2f}"
            )
        lines.append(line)
    lines += ["", "Seeding (bulk_create, batches of 5,000), not timed in the table:", ""]
    for result in results:
        seeds = ", ".join(f"{row['size']:,} in {row['seed_s']:.1f} s" for row in result["sizes"])
        lines.append(f"- {label[result['db']]}: {seeds}")
    for result in results:
        rows = sorted(result["sizes"], key=lambda r: r["size"])
        lines += ["", f"Queries of one turn on {label[result['db']]} with N = {rows[-1]['size']:,}:", "", "```sql"]
        lines += [_short_sql(sql) for sql in rows[-1]["queries"]]
        lines += ["```"]
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in _machine_info(results, command)]
    lines += ["", f"Total benchmark run time: {elapsed:.0f} s.", ""]
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if len(sizes) < 1 or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive integers, e.g. 10,1000,100000")
    return sizes


def add_thread_options(parser: argparse.ArgumentParser, *, sizes: Sequence[int], turns: int, warmup: int, output: Path) -> None:
    """The options of a benchmark of threads of N messages on SQLite and PostgreSQL, run by a
    worker process per database (the history and checkpointer benchmarks)."""
    parser.add_argument("--db", default="sqlite,postgres", help="databases, comma-separated (default: sqlite,postgres)")
    parser.add_argument("--sizes", type=_sizes, default=list(sizes), help=f"thread lengths N (default: {','.join(map(str, sizes))})")
    parser.add_argument("--turns", type=int, default=turns, help=f"timed turns per N (default: {turns})")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"warm-up turns per N (default: {warmup})")
    parser.add_argument("--output", type=Path, default=output, help=f"the markdown table (default: {output.relative_to(ROOT)})")
    parser.add_argument("--worker", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    add_thread_options(parser, sizes=DEFAULT_SIZES, turns=DEFAULT_TURNS, warmup=DEFAULT_WARMUP, output=RESULTS)
    parser.add_argument("--check", action="store_true", help=f"exit 1 when a ratio is above {TARGET_RATIO}")
    args = parser.parse_args(argv)
    if args.turns < 2:
        parser.error("--turns must be at least 2")

    if args.worker:
        result = run_worker(args.worker, args.sizes, args.turns, args.warmup)
        Path(args.json).write_text(json.dumps(result))
        return 0

    databases = [db.strip() for db in args.db.split(",") if db.strip()]
    unknown = set(databases) - {"sqlite", "postgres"}
    if unknown or not databases:
        parser.error(f"--db takes sqlite and/or postgres, not {','.join(sorted(unknown)) or 'nothing'}")
    command = os.environ.get("PYHUB_AI_BENCH_COMMAND") or shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])

    started = time.perf_counter()
    results = []
    for db in databases:
        print(f"==> history scaling on {db}: N = {', '.join(f'{n:,}' for n in args.sizes)}", flush=True)
        results.append(_run_database(db, args.sizes, args.turns, args.warmup))
    elapsed = time.perf_counter() - started

    report = render(results, command, elapsed)
    print()
    print(report)
    for result in results:
        print(f"---- every query of one turn, {result['db']} ----")
        for row in result["sizes"]:
            print(f"N = {row['size']:,}: {len(row['queries'])} queries")
            for sql in row["queries"]:
                print(f"    {_short_sql(sql)}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(f"Wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")

    if args.check:
        for result in results:
            rows = sorted(result["sizes"], key=lambda r: r["size"])
            if rows[-1]["p50_ms"] / rows[0]["p50_ms"] > TARGET_RATIO:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
