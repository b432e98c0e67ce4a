"""Benchmark: the CPU a chat turn costs with the usage ledger on, against the same run without it.

One worker process per database (SQLite, opened as the demo opens it: bench/checkpointer_settings.py; PostgreSQL when ``PYHUB_AI_BENCH_POSTGRES_URL`` is set,
as ``make bench`` does) drives turns through the real consumer path (``WebsocketCommunicator``,
``AgentChatConsumer``) with an in-process model that streams a short reply and reports its
usage, like a provider does. Three variants run interleaved, round after round, in the same
process and thread:

* ``ledger off``: the ledger row and the daily totals are not written (``ledger.record`` and
  ``statements.insert_usage`` replaced by no-ops): the app before the ledger;
* ``ledger on``: the default, one ledger INSERT and one totals upsert in the transaction that
  stores the reply;
* ``ledger + budget``: a user budget too (``PYHUB_AI_BUDGETS``): the budget check before each
  model call and the spending lock around each turn.

CPU per turn is ``time.process_time()`` over a round's turns (every thread of the process: the
event loop and the database thread), divided by the turns; the table shows the median round.
Then the transaction that stores a reply is timed alone, with and without the ledger's two
statements (``measure_transaction``): the ledger's own cost, without a whole turn's noise.
``python -m bench --only ledger`` (or ``make bench ARGS="--only ledger"``); the table goes to
bench/results/ledger.md.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "ledger.md"
ROUNDS, TURNS, WARMUP = 15, 20, 30
VARIANTS = ("ledger off", "ledger on", "ledger + budget")
REPLY = "Sure, here is a short answer of a dozen words or so for you."
WORKER_TIMEOUT = 240


def run_worker(rounds: int, turns: int) -> dict:
    """Runs in a process whose DJANGO_SETTINGS_MODULE is bench.checkpointer_settings."""
    import django

    django.setup()
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import override_settings
    from django.urls import path
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

    from pyhub_ai import ledger, statements
    from pyhub_ai.consumers import AgentChatConsumer
    from pyhub_ai.models import Conversation

    call_command("migrate", verbosity=0, interactive=False)
    usage = {"input_tokens": 120, "output_tokens": 14, "total_tokens": 134, "input_token_details": {"cache_read": 64}}

    class UsageReportingModel(BaseChatModel):
        """Streams ``REPLY`` word by word, then its usage, as a provider's last chunk does."""

        @property
        def _llm_type(self) -> str:
            return "bench-usage"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=REPLY, usage_metadata=usage))])

        async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
            for word in REPLY.split(" "):
                yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
            yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=usage))

    model = UsageReportingModel()

    class BenchConsumer(AgentChatConsumer):
        llm_model = "openai:gpt-4o-mini"

        def get_llm(self):
            return model

    application = URLRouter([path("ws/bench/<int:conversation_pk>/", BenchConsumer.as_asgi())])
    user = get_user_model().objects.create_user(username="bench-ledger", password="bench-pass-123")
    conversation = Conversation.objects.create(user=user)
    vendor = connection.vendor
    connection.close()

    @contextlib.contextmanager
    def variant(name: str):
        if name == "ledger off":
            saved = ledger.record, statements.insert_usage
            ledger.record, statements.insert_usage = (lambda *args: None), (lambda *args: None)
            try:
                yield
            finally:
                ledger.record, statements.insert_usage = saved
        elif name == "ledger + budget":
            with override_settings(PYHUB_AI_BUDGETS={"user": {"day": {"tokens": 10**15}}}):
                yield
        else:
            yield

    async def turn(communicator) -> None:
        await communicator.send_json_to({"type": "user_message", "text": "How are you?"})
        while (frame := await communicator.receive_json_from(timeout=10))["type"] != "stream_end":
            if frame["type"] == "error":
                raise RuntimeError(f"The consumer sent an error frame: {frame}")

    async def measure() -> dict[str, list[float]]:
        communicator = WebsocketCommunicator(application, f"/ws/bench/{conversation.pk}/")
        communicator.scope["user"] = user
        assert (await communicator.connect(timeout=10))[0]
        while (await communicator.receive_json_from(timeout=10))["type"] != "history":
            pass
        for _ in range(WARMUP):  # the history window fills up; caches warm
            await turn(communicator)
        samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for number in range(rounds):
            order = VARIANTS if number % 2 == 0 else VARIANTS[::-1]
            for name in order:
                with variant(name):
                    await turn(communicator)  # not timed: the first turn after a switch
                    started = time.process_time()
                    for _ in range(turns):
                        await turn(communicator)
                    samples[name].append((time.process_time() - started) / turns * 1000)
        await communicator.disconnect()
        return samples

    with override_settings(PYHUB_AI_FRAME_FLOOD_LIMIT=10**9):  # hundreds of turns on one connection
        samples = asyncio.run(measure())
    return {"vendor": vendor, "samples": samples, "transaction": measure_transaction(conversation, usage)}


def measure_transaction(conversation, usage: dict, calls: int = 1000, rounds: int = 5) -> dict[str, float]:
    """CPU (µs) of the transaction that stores a reply (``history._store_reply``'s statements),
    without and with the call's ledger row and totals: the ledger's own cost, free of the noise
    of a whole turn. Median of ``rounds`` rounds of ``calls`` transactions each, interleaved."""
    from django.db import transaction
    from django.utils import timezone
    from langchain_core.messages import AIMessage

    from pyhub_ai import ledger, statements
    from pyhub_ai.models import ConversationMessage

    row = ConversationMessage.from_message(AIMessage(content="ok"), conversation=conversation, user=conversation.user)
    row.save()
    reply = AIMessage(content=REPLY, usage_metadata=usage)
    call = ledger.ModelCall("openai:gpt-4o-mini", [], f"user:{conversation.user_id}")

    def store(with_ledger: bool) -> None:
        now = timezone.now()
        with transaction.atomic():
            statements.update_message(row.pk, content=row.content, status="complete", token_count=row.token_count)
            statements.add_conversation_activity(conversation.pk, input_tokens=120, output_tokens=14, updated_at=now)
            if with_ledger:
                statements.insert_usage(ledger.record(call, reply, row, now), [call.subject, ledger.SITE], ledger.day_of(now))

    samples: dict[str, list[float]] = {"ledger off": [], "ledger on": []}
    for _ in range(rounds):
        for name in samples:
            started = time.process_time()
            for _ in range(calls):
                store(name == "ledger on")
            samples[name].append((time.process_time() - started) / calls * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def _run(db: str, rounds: int, turns: int) -> dict:
    from bench.history_scaling import worker_database

    env, cleanup = worker_database(db, "bench.checkpointer_settings", "ledger", kind="_ledger")
    try:
        with tempfile.NamedTemporaryFile("r", suffix=".json") as output:
            command = [sys.executable, "-m", "bench.ledger", "--worker", "--rounds", str(rounds), "--turns", str(turns), "--json", output.name]
            subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=WORKER_TIMEOUT)
            return json.load(output)
    finally:
        for step in cleanup:
            step()


def report(results: list[dict], rounds: int, turns: int, command: str) -> str:
    lines = [
        "## Usage ledger: CPU per turn with the ledger on, against the same run without it",
        "",
        f"`{command}` — bench/ledger.py: in-process consumer path (`WebsocketCommunicator`), a model that "
        f"streams a 13-word reply and reports its usage; {rounds} rounds of {turns} turns per variant, "
        "interleaved in one process; CPU = `time.process_time()` of the process (event loop + database thread) "
        "per turn, median round (min–max).",
        "",
        "| database | " + " | ".join(VARIANTS) + " | ledger on vs off |",
        "|---|" + "---:|" * (len(VARIANTS) + 1),
    ]
    for result in results:
        medians = {name: statistics.median(values) for name, values in result["samples"].items()}
        cells = [f"{medians[name]:.2f} ms ({min(result['samples'][name]):.2f}–{max(result['samples'][name]):.2f})" for name in VARIANTS]
        change = (medians["ledger on"] / medians["ledger off"] - 1) * 100
        lines.append(f"| {result['vendor']} | " + " | ".join(cells) + f" | {change:+.1f} % |")
    lines += [
        "",
        "The transaction that stores a reply, alone (`bench/ledger.py: measure_transaction`: the reply's UPDATE, "
        "the conversation's totals, with and without the ledger row and daily totals; CPU per transaction, median of 5 "
        "rounds of 1,000), the ledger's own cost without the noise of a whole turn:",
        "",
        "| database | ledger off | ledger on | the ledger costs |",
        "|---|---:|---:|---:|",
    ]
    for result in results:
        off, on = result["transaction"]["ledger off"], result["transaction"]["ledger on"]
        lines.append(f"| {result['vendor']} | {off:.0f} µs | {on:.0f} µs | {on - off:+.0f} µs per model call |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres (default: both; postgres needs PYHUB_AI_BENCH_POSTGRES_URL)")
    args = parser.parse_args(argv)
    if args.worker:
        Path(args.json).write_text(json.dumps(run_worker(args.rounds, args.turns)))
        return 0
    databases = [db for db in args.db.split(",") if db != "postgres" or os.environ.get("PYHUB_AI_BENCH_POSTGRES_URL")]
    results = []
    for db in databases:
        print(f"Usage ledger benchmark on {db}: {args.rounds} rounds x {args.turns} turns x {len(VARIANTS)} variants", flush=True)
        results.append(_run(db, args.rounds, args.turns))
    command = os.environ.get("PYHUB_AI_BENCH_COMMAND", "python -m bench --only ledger")
    text = report(results, args.rounds, args.turns, command)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
