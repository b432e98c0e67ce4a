"""The report of the production-path benchmark (bench/prod_load.py): bench/results/production.md
(``render``) and bench/results/profile-production.md (``render_profile``)."""
from __future__ import annotations

import platform
import time
from pathlib import Path

from bench import ws_load
from bench.prod_load import REPEATS

LABELS = {
    "http": "bare consumer + minimal asyncio HTTP client (the floor)",
    "stored": "the floor plus our storage (each turn stored with pyhub_ai's history calls)",
    "http_every": "the floor, one `stream_delta` frame per token",
    "sdk": "bare consumer + openai SDK `chat.completions.create(stream=True)`",
    "langchain": "bare consumer + `ChatOpenAI.astream`",
    "standard": "**pyhub_ai, before** (`PYHUB_AI_LLM_FAST_STREAM = False`: `ChatOpenAI.astream`)",
    "fast": "**pyhub_ai, after** (default: `pyhub_ai.openai_stream`)",
}
GOAL_RATIO = 1.5  # the goals: CPU per 200-token reply <= 1.5 x the floor; short ones, 1.5 x (floor + storage)

#: Where the remaining time goes, for the profile of the fast path.
PROFILE_PARTS = [
    ("Event-loop thread (daphne, channels, the consumers)", "thread:MainThread"),
    ("ORM thread (asgiref's sync_to_async thread: every query)", "thread:ThreadPoolExecutor"),
    ("The model call: pyhub_ai.openai_stream (request, events, reply)", "openai_stream.py"),
    ("… sending the request (openai_direct: the SDK's request, retries; connecting)", "_open_response ("),
    ("… of which the openai SDK's own request() (a client openai_direct does not send for)", "AsyncAPIClient.request ("),
    ("… reading the stream (pyhub_ai.lean_http's response body)", "_Body._"),
    ("… decoding server-sent events and their JSON (openai_stream._EventDecoder)", "_EventDecoder.feed ("),
    ("… LangChain builds the request payload (_get_request_payload)", "_get_request_payload ("),
    ("… LangChain builds the reply message (reply())", "OpenAIReplyStream.reply ("),
    ("Sending frames to the socket (send_json → daphne → autobahn)", ".send_json ("),
    ("Relaying turn frames to the thread's group (group_send)", ".group_send ("),
    ("Consumer dispatch (client frames and channel-layer events)", "await_many_dispatch ("),
    ("Access check on every frame (check_access)", ".check_access ("),
    ("Thread lock and turn start/finish (thread_lock)", "thread_lock ("),
    ("close_old_connections() (channels, around every consumer event)", "close_old_connections ("),
]


def _ok(runs: list[dict]) -> list[dict]:
    return [r for r in runs if "failed" not in r and "skipped" not in r and r.get("turns_done")]


def _best(runs: list[dict]) -> dict[str, dict]:
    """Per consumer, its answered run with the least CPU per reply (the floor and the app run
    ``prod_load.REPEATS`` times)."""
    best: dict[str, dict] = {}
    for run in _ok(runs):
        if run["consumer"] not in best or run["cpu_ms_per_reply"] < best[run["consumer"]]["cpu_ms_per_reply"]:
            best[run["consumer"]] = run
    return best


def _ratio(value: float | None, base: float | None) -> str:
    return "–" if not value or not base else f"{value / base:.2f}×"


def _errors(run: dict) -> str:
    """ws_load's errors of a run (error frames, incomplete streams), and turns not stored."""
    text = ws_load._errors_text({**run, "turns_skipped": 0})  # turns are not counted ahead here
    parts = [text] if text != "0" else []
    if "answered_turns_stored" in run and run["answered_turns_stored"] != run["turns_done"]:
        parts.append(f"{run['turns_done'] - run['answered_turns_stored']} answered turns not stored")
    if run.get("daphne_log_errors"):
        parts.append(f"{run['daphne_log_errors']} tracebacks in daphne's log")
    return ", ".join(parts) or "0"


def comparison_table(runs: list[dict]) -> list[str]:
    """One configuration (reply length, window): every consumer, as ratios to the baselines."""
    by = _best(runs)
    floor, sdk, lc = (by.get(k, {}).get("cpu_ms_per_reply") for k in ("http", "sdk", "langchain"))
    floor_tps = by.get("http", {}).get("turns_per_s")
    lines = [
        "| what runs in daphne | CPU ms / reply | CPU µs / token | × floor | × SDK | × `ChatOpenAI.astream` | turns/s | turns/s ÷ floor's | turn p50 / p99 (ms) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        if run not in _ok(runs):
            why = run.get("failed") or run.get("skipped") or "no turn answered"
            lines.append(f"| {LABELS[run['consumer']]} | {why} | | | | | | | | |")
            continue
        cpu = run["cpu_ms_per_reply"]
        label = LABELS[run["consumer"]] + ("" if by[run["consumer"]] is run else " (another run of it)")
        lines.append(
            f"| {label} | {cpu:.1f} | {1000 * cpu / run['tokens']:.0f} | {_ratio(cpu, floor)} | {_ratio(cpu, sdk)} | "
            f"{_ratio(cpu, lc)} | {run['turns_per_s']:.1f} | {_ratio(run['turns_per_s'], floor_tps)} | "
            f"{ws_load._fmt(run['latency_ms']['p50'])} / {ws_load._fmt(run['latency_ms']['p99'])} | {_errors(run)} |"
        )
    return lines


def headline(configs: dict[tuple[int, int], list[dict]]) -> list[str]:
    """After against the floor, and the goals (``_goal``). Our storage is measured: the CPU per
    reply of the floor plus our storage (``stored``, which stores every turn with pyhub_ai's own
    history calls) less the floor's. The database thread's CPU in the app's run (daphne's
    threads other than the event loop's) is shown beside it: the part of storage that runs off
    the loop."""
    lines = [
        "| reply | window | floor (ms) | floor + our storage (ms) | before (ms) | after (ms) | of which the database thread (ms) | after ÷ floor | after ÷ (floor + storage) | before ÷ after | after − floor (ms) | after ÷ floor with one frame per token | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (tokens, window), runs in configs.items():
        ok = _best(runs)
        by = {consumer: r["cpu_ms_per_reply"] for consumer, r in ok.items()}
        floor, stored, before, after, every = (by.get(k) for k in ("http", "stored", "standard", "fast", "http_every"))
        if not (floor and after):
            continue
        db_thread = ok["fast"].get("other_threads_cpu_ms_per_reply")
        goal = _goal(tokens, floor, stored, after)
        lines.append(
            f"| {tokens} tokens | {window} | {floor:.1f} | {ws_load._fmt(stored, 1)} | {ws_load._fmt(before, 1)} | {after:.1f} | "
            f"{ws_load._fmt(db_thread, 1)} | {after / floor:.2f}× | {_ratio(after, stored)} | {_ratio(before, after)} | "
            f"{after - floor:.1f} | {_ratio(after, every)} | {goal} |"
        )
    return lines


def _goal(tokens: int, floor: float, stored: float | None, after: float) -> str:
    """The headline's goal cell (``headline``): ≤ 1.5× the floor for 200-token replies; for
    short ones ≤ 1.5× the floor plus our storage, read as 1.5 × (floor + storage), with the
    stricter reading (1.5 × floor, our storage added once) beside it."""
    if tokens >= 200:
        return f"≤ {GOAL_RATIO}× floor: **{'met' if after <= GOAL_RATIO * floor else 'MISSED'}**"
    if not stored:
        return "no run of the floor plus our storage"
    limit, strict = GOAL_RATIO * stored, GOAL_RATIO * floor + (stored - floor)
    return (
        f"≤ {GOAL_RATIO}× (floor + storage) = {limit:.1f} ms: **{'met' if after <= limit else 'MISSED'}**; "
        f"{GOAL_RATIO}× floor, plus storage: ≤ {strict:.1f} ms, {'met' if after <= strict else 'missed'}"
    )


def scale_table(runs: list[dict]) -> list[str]:
    lines = [
        "| path | reply | daphne processes | N | turns/s | daphne CPU (% of one core, all processes) | turns/s per daphne core | CPU ms / reply | turn p50 / p99 (ms) | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        if run not in _ok(runs):
            lines.append(f"| {run['consumer']} | {run['tokens']} tokens | {run['processes']} | {run['n']} | {run.get('failed') or run.get('skipped') or 'no turn answered'} | | | | | |")
            continue
        per_core = run["turns_per_s"] / (run["daphne_pct"] / 100) if run["daphne_pct"] else None
        lines.append(
            f"| {'after (fast)' if run['consumer'] == 'fast' else 'before (astream)'} | {run['tokens']} tokens | {run['processes']} | {run['n']} | "
            f"{run['turns_per_s']:.1f} | {run['daphne_pct']:.0f}% | {ws_load._fmt(per_core, 1)} | {run['cpu_ms_per_reply']:.1f} | "
            f"{ws_load._fmt(run['latency_ms']['p50'])} / {ws_load._fmt(run['latency_ms']['p99'])} | {_errors(run)} |"
        )
    return lines


def render(groups: list[dict], command: str, elapsed: float, pace: float) -> str:
    import langchain_core
    import langchain_openai
    import openai

    sqlite = [r for g in groups if g["group"] == "sqlite" for r in g["runs"] if not r.get("profile")]
    postgres = [r for g in groups if g["group"] == "postgres" for r in g["runs"]]
    configs: dict[tuple[int, int], list[dict]] = {}
    for run in sqlite:
        configs.setdefault((run["tokens"], run["window"]), []).append(run)
    n = sqlite[0]["n"] if sqlite else "N"
    lines = [
        "# The production model path: CPU per reply through the websocket, ChatOpenAI over HTTP",
        "",
        f"Produced by `bench/prod_load.py` (`{command}`, {time.strftime('%Y-%m-%d %H:%M %Z')}, {elapsed:.0f} s; "
        f"Python {platform.python_version()}, openai {openai.__version__}, langchain-openai {langchain_openai.__version__ if hasattr(langchain_openai, '__version__') else '?'}, "
        f"langchain-core {langchain_core.__version__}). A local OpenAI-compatible server (`bench/model_server.py`, tests/fake_openai.py, "
        f"its own process) streams each reply as one server-sent event per token, {pace * 1000:.0f} ms apart. One daphne process "
        "serves either the app's consumer, configured as users configure it (`llm_model = \"openai:gpt-4o-mini\"`, "
        "`OPENAI_BASE_URL` + `OPENAI_API_KEY`; each conversation seeded with the window of stored messages), or a bare channels "
        "consumer that sends the same frames (deltas gathered every 50 ms, as the app does), stores nothing and asks the same server "
        "for the same prompt with the client named in the row; the floor plus our storage is the floor storing each turn in a "
        "seeded thread with pyhub_ai's own history calls (the lock, the window read, the question and the reply's placeholder, "
        "then the reply, its usage and the ledger's record); every storing run starts on the SQLite database as it was migrated, "
        f"so none pays for the turns the runs before it stored. {n} websockets run turns back to back for the phase; "
        "**CPU per reply** = daphne's CPU time (user + system, all threads) over the phase ÷ turns answered, so it does not depend "
        "on what else runs on the machine; ratios are to baselines measured in the same run. The floor, the floor plus our storage and `after` run "
        f"{REPEATS} times each per configuration, alternating; the headline and the ratios take each one's run with the least CPU "
        "(the other runs are listed too). `before` is the app with "
        "`PYHUB_AI_LLM_FAST_STREAM = False` (LangChain's `ChatOpenAI.astream`, the path of the previous release), `after` the default.",
        "",
        "## Headline: pyhub_ai's CPU per reply against the floor",
        "",
        *headline(configs),
    ]
    for (tokens, window), runs in configs.items():
        lines += ["", f"## {tokens}-token replies, prompt window of {window} stored messages", "", *comparison_table(runs)]
    if postgres:
        lines += [
            "", "## Scale-out on the production path: PostgreSQL + Redis channel layer, one and two daphne processes", "",
            f"The app's consumer, window of {postgres[0]['window']} messages, clients split evenly over the processes; all on the same "
            "2-core machine as PostgreSQL, Redis, the model server and the client, so two processes share the cores with them. "
            "**turns/s per daphne core** = turns/s ÷ (daphne CPU seconds per second): what one core of daphne serves.", "",
            *scale_table(postgres),
        ]  # fmt: skip
    return "\n".join(lines) + "\n"


def render_profile(run: dict, raw: Path, kept_name: str) -> str:
    """ws_load's profile report, with the parts of the production path."""
    adapted = {**run, "overhead_ms": run["latency_ms"], "cpu": {"daphne_pct": [run["daphne_pct"]]}}
    text = ws_load.render_profile(adapted, raw, kept_name, parts=PROFILE_PARTS)
    text = text.replace(f"--duration {ws_load.PROFILE_SECONDS}`", f"--duration {run['phase'] - 1:.0f}`")
    text = text.replace("overhead p50", "turn p50")
    return text.replace(
        f"# Profile of daphne during {run['name']}",
        f"# Profile of daphne on the production path ({run['name']}: {run['tokens']}-token replies from the model server over HTTP, "
        f"window of {run['window']} messages, {run['cpu_ms_per_reply']:.1f} ms CPU per reply)",
    )
