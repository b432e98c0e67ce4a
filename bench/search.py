"""Benchmark: searching one's own messages among 1,000,000 stored ones (``pyhub_ai.search``).

One worker process per database (SQLite as the demo opens it, bench/checkpointer_settings.py;
PostgreSQL when ``PYHUB_AI_BENCH_POSTGRES_URL`` is set, as ``make bench`` does) migrates a
throwaway database (the full-text index of migration 0006 included), stores N messages (default
1,000,000: 100 users, 10 conversations each, 12 random words per message from a mixed Korean and
English vocabulary, inserted with the index kept up to date, as the app stores them), then times
``search_messages(user, query)`` for one user: a word in about a third of the messages, a
Korean word found by its prefix ("스타벅스" in "스타벅스에서"), two words, and a word in no message.
Each query runs 3 times to warm up, then 10 timed times; the table shows the median and the
slowest. ``python -m bench --only search`` (or ``make bench ARGS="--only search"``); the table
goes to bench/results/search.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "search.md"
MESSAGES = 1_000_000
USERS, CONVERSATIONS_PER_USER = 100, 10
WORDS = "커피 라떼 스타벅스에서 주문했어요 내일 coffee latte order station train seoul busan hello weather today".split()
QUERIES = ("coffee", "스타벅스", "latte seoul", "nowhere")
WARMUP, RUNS = 3, 10
BATCH = 10_000
WORKER_TIMEOUT = 900


def run_worker(messages: int) -> dict:
    """Runs in a process whose DJANGO_SETTINGS_MODULE is bench.checkpointer_settings."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction
    from langchain_core.messages import HumanMessage

    from pyhub_ai.models import Conversation, ConversationMessage
    from pyhub_ai.search import search_messages

    call_command("migrate", verbosity=0)
    users = get_user_model().objects.bulk_create([get_user_model()(username=f"user-{n}") for n in range(USERS)])
    conversations = Conversation.objects.bulk_create(
        [Conversation(user=user, title=f"chat {n}") for user in users for n in range(CONVERSATIONS_PER_USER)]
    )
    template = ConversationMessage.from_message(HumanMessage("x"))
    table, field = ConversationMessage._meta.db_table, ConversationMessage._meta.get_field("content")
    columns = "conversation_id, user_id, visitor_key, role, content, status, visible, turn_id, idempotency_key, token_count, created_at"
    sql = f"INSERT INTO {table} ({columns}) VALUES (%s, %s, '', 'human', %s, 'complete', %s, NULL, '', 12, CURRENT_TIMESTAMP)"
    rng = random.Random(7)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for first in range(0, messages, BATCH):
            rows = []
            for n in range(first, min(first + BATCH, messages)):
                conversation = conversations[n % len(conversations)]
                text = " ".join(rng.choice(WORDS) for _ in range(12))
                content = {**template.content, "data": {**template.content["data"], "content": text}}
                rows.append((conversation.pk, conversation.user_id, field.get_db_prep_save(content, connection), True))
            with transaction.atomic():
                cursor.executemany(sql, rows)
    seconds_to_store = time.perf_counter() - started
    user = users[USERS // 2]
    timings = {}
    for query in QUERIES:
        samples = []
        for run in range(WARMUP + RUNS):
            started = time.perf_counter()
            hits = search_messages(user, query)
            if run >= WARMUP:
                samples.append((time.perf_counter() - started) * 1000)
        timings[query] = {"median": statistics.median(samples), "max": max(samples), "hits": len(hits)}
    return {"vendor": connection.vendor, "messages": messages, "store_seconds": seconds_to_store, "timings": timings}


def _run(db: str, messages: int) -> dict:
    from bench.history_scaling import worker_database

    env, cleanup = worker_database(db, "bench.checkpointer_settings", "search", kind="_search")
    try:
        with tempfile.NamedTemporaryFile("r", suffix=".json") as output:
            command = [sys.executable, "-m", "bench.search", "--worker", "--messages", str(messages), "--json", output.name]
            subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=WORKER_TIMEOUT)
            return json.load(output)
    finally:
        for step in cleanup:
            step()


def report(results: list[dict], command: str) -> str:
    lines = [
        "## Search: one user's messages among all stored ones",
        "",
        f"`{command}` — bench/search.py: `pyhub_ai.search.search_messages(user, query)` (at most 50 results, "
        f"newest first) for one of {USERS} users, {CONVERSATIONS_PER_USER} conversations each; 12 random words per "
        f"message; {RUNS} timed runs after {WARMUP}, median (slowest).",
        "",
        "| database | messages stored | stored in | " + " | ".join(f"“{q}”" for q in QUERIES) + " |",
        "|---|---:|---:|" + "---:|" * len(QUERIES),
    ]
    for result in results:
        cells = [f"{t['median']:.1f} ms ({t['max']:.1f}), {t['hits']} hits" for t in (result["timings"][q] for q in QUERIES)]
        lines.append(f"| {result['vendor']} | {result['messages']:,} | {result['store_seconds']:.0f} s | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=MESSAGES)
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres (default: both; postgres needs PYHUB_AI_BENCH_POSTGRES_URL)")
    args = parser.parse_args(argv)
    if args.worker:
        Path(args.json).write_text(json.dumps(run_worker(args.messages)))
        return 0
    databases = [db for db in args.db.split(",") if db != "postgres" or os.environ.get("PYHUB_AI_BENCH_POSTGRES_URL")]
    results = []
    for db in databases:
        print(f"Search benchmark on {db}: {args.messages:,} messages", flush=True)
        results.append(_run(db, args.messages))
    text = report(results, os.environ.get("PYHUB_AI_BENCH_COMMAND", "python -m bench --only search"))
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
