"""Benchmark: the tool loop of a chat turn, ours (``AgentMixin``) vs. LangChain's agent runtime (``create_agent``, run by ``GraphMixin``).

Two consumers, both ``pyhub_ai.consumers.AgentChatConsumer`` subclasses, answer with the same
model and the same tool (``get_weather``):

* ``AgentMixin``: ``tools = [get_weather]``, the hand-written loop (pyhub_ai/mixins/agent.py);
* ``create_agent``: ``graph = create_agent(model, [get_weather], checkpointer=DjangoSaver())``,
  run by ``GraphMixin`` (pyhub_ai/mixins/graph.py) with the thread's checkpoint.

The model (``CONFIGS``) is either a fake one in-process (``ScriptedToolModel``, streamed through
LangChain's ``astream`` by tests/fake_models.py's ``reply_chunks``, as tests/conftest.py's
``ToolCallingFakeChatModel`` is: a chunk per word, tool-call chunks, its usage last), with
``PYHUB_AI_STREAM_DELTA_INTERVAL`` as shipped and at 0 (a frame per token), or ``ChatOpenAI``
against a local OpenAI-compatible server in its own process (``serve_model``,
tests/fake_openai.py scripted the same way): the production model path, where ``AgentMixin``
streams through pyhub_ai's fast OpenAI stream and ``create_agent`` through LangChain's. Three
scripted turns (``SCENARIOS``; the user message says ``[tools=N]``): a plain reply; one tool
call, then an answer; three sequential tool calls (one per model step), then an answer.

Each round opens a new conversation on a ``WebsocketCommunicator`` (not timed) and runs
``TURNS`` turns of one scenario on it, so both variants see the same thread lengths; variants,
scenarios and models are interleaved, round after round, in one process, after ``WARMUP``
untimed rounds of each. CPU per turn is ``time.process_time()`` over the round's turns (every
thread of the process: the event loop, the database thread, the tool's executor thread) divided
by ``TURNS``; the table shows the median round. Frames are every frame the client received from
``user_message`` to ``stream_end``, counted by type; rows are the conversation's
``ConversationMessage`` rows by role and status; checkpoint bytes are what the graph's thread
holds in ``Checkpoint`` (checkpoint and metadata JSON), ``CheckpointBlob`` and
``CheckpointWrite`` (the messages themselves are the rows both variants store: ``DjangoSaver``
refers to them). All counted after the timer stops.

One worker process on a throwaway SQLite file opened as the demo opens it
(bench/checkpointer_settings.py). ``python -m bench --only toolloop`` (or
``python -m bench.tool_loop``); the table goes to bench/results/tool_loop.md.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "tool_loop.md"
ROUNDS, TURNS, WARMUP = 21, 6, 2
VARIANTS = ("AgentMixin", "create_agent")
SCENARIOS = (("plain reply", 0), ("1 tool call", 1), ("3 tool calls", 3))  # name, model steps that call a tool
# name, model ("fake": ScriptedToolModel in-process; "openai": ChatOpenAI and the local model server),
# PYHUB_AI_STREAM_DELTA_INTERVAL (None: the default, tokens within 50 ms share a frame; 0: a frame per token)
CONFIGS = (
    ("fake model, default deltas", "fake", None),
    ("fake model, a frame per token", "fake", 0),
    ("ChatOpenAI, local server", "openai", None),
)
TOOL_STEPS = re.compile(r"\[tools=(\d+)\]")
ANSWER = "It is sunny in Seoul today, with a light breeze and no rain expected."
WORKER_TIMEOUT = 240


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def tool_steps_of(text: str) -> int:
    """The tool steps a scenario's user message asks for (``[tools=N]``)."""
    match = TOOL_STEPS.search(text)
    return int(match.group(1)) if match else 0


def serve_model() -> int:
    """The local OpenAI-compatible model server, in its own process (its CPU is not the
    worker's): tests/fake_openai.py's server, scripted as ``ScriptedToolModel`` is — each
    completion calls ``get_weather`` while the turn (the messages after the last user message)
    has fewer tool results than its ``[tools=N]`` asks, then answers ``ANSWER``. Prints its
    port, then serves until terminated."""
    import signal
    import threading

    from tests.fake_openai import FakeOpenAI, Reply, ToolCall

    class ScriptedServer(FakeOpenAI):
        calls = 0

        async def _respond(self, request, writer):
            messages = (request.body or {}).get("messages", []) if isinstance(request.body, dict) else []
            done, asked = 0, 0
            for message in reversed(messages):
                if message.get("role") == "user":
                    asked = tool_steps_of(str(message.get("content", "")))
                    break
                done += message.get("role") == "tool"
            ScriptedServer.calls += 1
            if done < asked:
                self.replies.append(Reply(tool_calls=[ToolCall("get_weather", json.dumps({"city": "Seoul"}), f"call_{ScriptedServer.calls}")]))
            else:
                self.replies.append(ANSWER)
            await super()._respond(request, writer)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ScriptedServer(record=False) as server:
        print(server.port, flush=True)
        stop.wait()
    return 0


def run_worker(rounds: int, turns: int, warmup: int, base_url: str) -> dict:
    """Runs in a process whose DJANGO_SETTINGS_MODULE is bench.checkpointer_settings;
    ``base_url``: the local model server's."""
    import django

    django.setup()
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import override_settings
    from django.urls import path
    from langchain.agents import create_agent
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_openai import ChatOpenAI

    from pyhub_ai.checkpoint import DjangoSaver
    from pyhub_ai.consumers import AgentChatConsumer
    from pyhub_ai.models import Conversation
    from tests.fake_models import reply_chunks

    call_command("migrate", verbosity=0, interactive=False)
    usage = {"input_tokens": 120, "output_tokens": 14, "total_tokens": 134}

    class ScriptedToolModel(BaseChatModel):
        """Calls ``get_weather`` while the turn (the messages after the last human message) has
        fewer tool results than the human message's ``[tools=N]`` asks, then answers ``ANSWER``;
        streamed by ``reply_chunks``, as tests/conftest.py's ``ToolCallingFakeChatModel`` is (a
        chunk per word, tool-call chunks, ``usage`` last). ``bind_tools`` returns the model
        itself."""

        calls: int = 0

        @property
        def _llm_type(self) -> str:
            return "bench-tool-loop"

        def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedToolModel:
            return self

        def _next(self, messages: list) -> AIMessage:
            done, asked = 0, 0
            for message in reversed(messages):
                if isinstance(message, HumanMessage):
                    asked = tool_steps_of(message.text)
                    break
                done += isinstance(message, ToolMessage)
            self.calls += 1
            if done < asked:
                return AIMessage(content="", tool_calls=[{"name": "get_weather", "args": {"city": "Seoul"}, "id": f"call_{self.calls}"}])
            return AIMessage(content=ANSWER)

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            return ChatResult(generations=[ChatGeneration(message=self._next(messages))])

        async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
            for chunk in reply_chunks(self._next(messages), usage):
                yield chunk

    models = {
        "fake": ScriptedToolModel(),
        "openai": ChatOpenAI(model="gpt-4o-mini", api_key="sk-bench", base_url=base_url, stream_usage=True),
    }
    saver = DjangoSaver()

    def consumers(model: BaseChatModel) -> dict[str, type]:
        """The two consumers of ``model``: the hand-written loop, and ``create_agent``."""

        class LoopConsumer(AgentChatConsumer):
            llm_model = "openai:gpt-4o-mini"
            tools = [get_weather]

            def get_llm(self):
                return model

        class GraphConsumer(AgentChatConsumer):
            llm_model = "openai:gpt-4o-mini"
            graph = create_agent(model, [get_weather], checkpointer=saver)
            checkpointer = saver

        return {"AgentMixin": LoopConsumer, "create_agent": GraphConsumer}

    application = URLRouter([
        path(f"ws/{name}/{variant}/<int:conversation_pk>/", consumer.as_asgi())
        for name, model in models.items() for variant, consumer in consumers(model).items()
    ])  # fmt: skip
    user = get_user_model().objects.create_user(username="bench-tool-loop", password="bench-pass-123")

    async def run_round(model: str, variant: str, tool_steps: int) -> tuple[float, Conversation, list[Counter]]:
        conversation = await Conversation.objects.acreate(user=user)
        communicator = WebsocketCommunicator(application, f"/ws/{model}/{variant}/{conversation.pk}/")
        communicator.scope["user"] = user
        assert (await communicator.connect(timeout=10))[0]
        while (await communicator.receive_json_from(timeout=10))["type"] != "history":
            pass
        frames: list[Counter] = []
        started = time.process_time()
        for number in range(turns):
            await communicator.send_json_to({"type": "user_message", "text": f"What is the weather in Seoul? [tools={tool_steps}] ({number})"})
            counts: Counter = Counter()
            while True:
                frame = await communicator.receive_json_from(timeout=10)
                counts[frame["type"]] += 1
                if frame["type"] == "error":
                    raise RuntimeError(f"The {variant} consumer sent an error frame: {frame}")
                if frame["type"] == "stream_end":
                    break
            frames.append(counts)
        cpu_ms = (time.process_time() - started) / turns * 1000
        await communicator.disconnect()
        return cpu_ms, conversation, frames

    def stored(conversation: Conversation) -> dict[str, Any]:
        from django.db.models import Sum, TextField
        from django.db.models.functions import Cast, Coalesce, Length

        from pyhub_ai.models import Checkpoint, CheckpointBlob, CheckpointWrite, ConversationMessage, GraphThread

        rows = Counter(f"{role} {status}" for role, status in ConversationMessage.objects.filter(conversation=conversation).values_list("role", "status"))
        threads = GraphThread.objects.filter(conversation=conversation)

        def total(queryset: Any, *expressions: Any) -> int:
            summed = sum((Coalesce(Length(expression), 0) for expression in expressions[1:]), Coalesce(Length(expressions[0]), 0))
            return queryset.aggregate(total=Sum(summed))["total"] or 0

        checkpoints = Checkpoint.objects.filter(thread__in=threads)
        blobs = CheckpointBlob.objects.filter(thread__in=threads)
        writes = CheckpointWrite.objects.filter(thread__in=threads)
        return {
            "rows": dict(rows),
            "checkpoint_rows": {"Checkpoint": checkpoints.count(), "CheckpointBlob": blobs.count(), "CheckpointWrite": writes.count()},
            "checkpoint_bytes": total(checkpoints, Cast("checkpoint", TextField()), Cast("metadata", TextField()))
            + total(blobs, "blob")
            + total(writes, "blob"),
        }

    async def measure() -> dict:
        from asgiref.sync import sync_to_async

        results: dict[str, dict[str, Any]] = {
            f"{config}|{scenario}|{variant}": {"cpu_ms": [], "frames": [], "stored": []}
            for config, _, _ in CONFIGS for scenario, _ in SCENARIOS for variant in VARIANTS
        }
        for number in range(warmup + rounds):
            for config, model, delta_interval in CONFIGS:
                deltas = override_settings(PYHUB_AI_STREAM_DELTA_INTERVAL=delta_interval) if delta_interval is not None else contextlib.nullcontext()
                with deltas:
                    for scenario, tool_steps in SCENARIOS:
                        for variant in VARIANTS if number % 2 == 0 else VARIANTS[::-1]:
                            cpu_ms, conversation, frames = await run_round(model, variant, tool_steps)
                            if number < warmup:
                                continue
                            result = results[f"{config}|{scenario}|{variant}"]
                            result["cpu_ms"].append(cpu_ms)
                            result["frames"] += [dict(counts) for counts in frames]
                            result["stored"].append(await sync_to_async(stored)(conversation))
        return results

    with override_settings(PYHUB_AI_FRAME_FLOOD_LIMIT=10**9):
        results = asyncio.run(measure())
    import langchain
    import langgraph.version

    return {"turns": turns, "results": results, "versions": {"langchain": langchain.__version__, "langgraph": langgraph.version.__version__}}


def _per_turn(counters: list[dict[str, int]], turns_each: int) -> tuple[dict[str, float], bool]:
    """The mean count of each key per turn (each sample counts ``turns_each`` turns), and
    whether every sample had the same counts."""
    total: Counter = Counter()
    for counts in counters:
        total.update(counts)
    same = all(counts == counters[0] for counts in counters)
    return {key: value / (len(counters) * turns_each) for key, value in sorted(total.items())}, same


def _cells(counts: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:g}" for key, value in counts.items()) or "—"


def summarize(run: dict) -> dict[str, dict[str, Any]]:
    """Per ``deltas|scenario|variant``: CPU median/min/max, frames, rows and checkpoint rows per
    turn, checkpoint bytes per turn."""
    turns = run["turns"]
    summary = {}
    for key, result in run["results"].items():
        frames, frames_same = _per_turn(result["frames"], 1)
        summary[key] = {
            "cpu": (statistics.median(result["cpu_ms"]), min(result["cpu_ms"]), max(result["cpu_ms"])),
            "frames": frames,
            "frames_same": frames_same,
            "rows": _per_turn([s["rows"] for s in result["stored"]], turns)[0],
            "checkpoint_rows": {k: v for k, v in _per_turn([s["checkpoint_rows"] for s in result["stored"]], turns)[0].items() if v},
            "checkpoint_bytes": statistics.mean(s["checkpoint_bytes"] for s in result["stored"]) / turns,
        }
    return summary


def report(run: dict, rounds: int, command: str) -> str:
    turns = run["turns"]
    summary = summarize(run)
    lines = [
        "## Tool loop: AgentMixin (hand-written) vs. create_agent (GraphMixin), the same turns",
        "",
        f"`{command}` — bench/tool_loop.py: in-process consumer path (`WebsocketCommunicator`), SQLite "
        "(WAL, as the demo opens it), a model that streams a 14-word answer (a chunk per word) or a `get_weather` "
        "tool call, and its usage: the fake model in-process (`ScriptedToolModel`, LangChain's `astream`), or "
        "`ChatOpenAI` against a local OpenAI-compatible server in its own process (bench/tool_loop.py: "
        f"`serve_model`; its CPU is not counted). Each round is a new conversation of {turns} turns of one "
        f"scenario; {rounds} rounds per scenario and variant, interleaved in one process. CPU = "
        "`time.process_time()` of the process per turn (event loop, database and tool threads), median round "
        "(min–max). \"default deltas\": `PYHUB_AI_STREAM_DELTA_INTERVAL` as shipped (tokens within 50 ms share a "
        "`stream_delta`); \"a frame per token\": set to 0. Checkpoint bytes: what the thread's `Checkpoint`, "
        "`CheckpointBlob` and `CheckpointWrite` rows hold per turn (the messages are the rows both variants store). "
        f"langchain {run['versions']['langchain']}, langgraph {run['versions']['langgraph']}.",
        "",
        "| model, stream_delta | scenario | AgentMixin CPU/turn | create_agent CPU/turn | create_agent ÷ AgentMixin | checkpoint bytes/turn (create_agent) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for config, _, _ in CONFIGS:
        for scenario, _ in SCENARIOS:
            loop, graph = (summary[f"{config}|{scenario}|{variant}"] for variant in VARIANTS)
            cells = [f"{s['cpu'][0]:.2f} ms ({s['cpu'][1]:.2f}–{s['cpu'][2]:.2f})" for s in (loop, graph)]
            lines.append(
                f"| {config} | {scenario} | {cells[0]} | {cells[1]} | {graph['cpu'][0] / loop['cpu'][0]:.2f}× | "
                f"{graph['checkpoint_bytes']:,.0f} B |"
            )
    lines += [
        "",
        "Per turn (mean over every measured turn; the same in every turn unless noted):",
        "",
        "| model, stream_delta | scenario | variant | frames received (type count) | rows stored (role status count) | checkpoint rows |",
        "|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for config, _, _ in CONFIGS:
        for scenario, _ in SCENARIOS:
            loop, graph = (summary[f"{config}|{scenario}|{variant}"] for variant in VARIANTS)
            for variant, s in zip(VARIANTS, (loop, graph)):
                varies = "" if s["frames_same"] else " (varies by turn)"
                lines.append(f"| {config} | {scenario} | {variant} | {_cells(s['frames'])}{varies} | {_cells(s['rows'])} | {_cells(s['checkpoint_rows'])} |")
            if loop["frames"] != graph["frames"]:
                differing = sorted(k for k in set(loop["frames"]) | set(graph["frames"]) if loop["frames"].get(k) != graph["frames"].get(k))
                notes.append(
                    f"- {config}, {scenario}: frames differ in "
                    + "; ".join(f"{k} (AgentMixin {loop['frames'].get(k, 0):g}, create_agent {graph['frames'].get(k, 0):g})" for k in differing)
                    + "."
                )
            if loop["rows"] != graph["rows"]:
                notes.append(f"- {config}, {scenario}: rows differ: AgentMixin {_cells(loop['rows'])}; create_agent {_cells(graph['rows'])}.")
    lines += ["", "Where the variants differ in frames or rows:" if notes else "Frames and rows: the same for both variants in every scenario.", ""]
    lines += notes
    return "\n".join(lines).rstrip() + "\n"


def _run(rounds: int, turns: int, warmup: int) -> dict:
    from bench.history_scaling import worker_database

    server = subprocess.Popen(
        [sys.executable, "-m", "bench.tool_loop", "--model-server"], cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )  # fmt: skip
    env, cleanup = worker_database("sqlite", "bench.checkpointer_settings", "toolloop")
    try:
        base_url = f"http://127.0.0.1:{int(server.stdout.readline())}/v1"
        with tempfile.NamedTemporaryFile("r", suffix=".json") as output:
            command = [sys.executable, "-m", "bench.tool_loop", "--worker", "--rounds", str(rounds), "--turns", str(turns),
                       "--warmup", str(warmup), "--base-url", base_url, "--json", output.name]  # fmt: skip
            subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=WORKER_TIMEOUT)
            return json.load(output)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        for step in cleanup:
            step()


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m bench.tool_loop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    args = parser.parse_args(argv)
    if args.model_server:
        return serve_model()
    if args.worker:
        Path(args.json).write_text(json.dumps(run_worker(args.rounds, args.turns, args.warmup, args.base_url)))
        return 0
    print(
        f"Tool-loop benchmark on sqlite: {args.rounds} rounds x {args.turns} turns x {len(SCENARIOS)} scenarios "
        f"x {len(CONFIGS)} configurations x {len(VARIANTS)} variants",
        flush=True,
    )
    started = time.perf_counter()
    run = _run(args.rounds, args.turns, args.warmup)
    command = os.environ.get("PYHUB_AI_BENCH_COMMAND", "python -m bench --only toolloop")
    text = report(run, args.rounds, command)
    RESULTS.write_text(text)
    print(text)
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
