"""Several daphne processes on one database and one Redis: what production runs.

Two real daphne children (``tests.live_server.run_daphnes``) serve the demo on the PostgreSQL
test database with the Redis channel layer; real websocket clients (the ``websockets``
package) talk to them. The tests check that the tabs of one thread stay in sync across
processes (docs/protocol.md, "Several tabs, several workers") and what is left when a process
is killed mid-reply.

They need PostgreSQL (``DATABASE_URL``) and Redis (``REDIS_URL``): processes share groups only
through Redis, and SQLite is not for several writers. ``make test`` runs them in its
PostgreSQL + Redis run and deselects them in its SQLite run (``-m "not multiprocess"``);
elsewhere, without those servers they are skipped, except on CI (``CI=true``), where they fail.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from websockets.exceptions import ConnectionClosed

from example.models import LLMChatRoom
from pyhub_ai.locks import is_locked, thread_key
from pyhub_ai.models import ConversationMessage, ThreadLock
from tests.live_server import LiveServer, run_daphnes
from tests.test_thread_start import open_empty_thread_in_many_tabs
from tests.ws_client import FRAME_TIMEOUT, Client, signed_in_cookie

pytestmark = [pytest.mark.multiprocess, pytest.mark.django_db(transaction=True)]

#: Seconds the turn lock of a killed process outlives it (``PYHUB_AI_TURN_LOCK_LEASE``, 15 by
#: default), in the daphne children.
LEASE = 3.0
#: The daphne children stream the offline model's reply word by word, 50 ms apart (a reply
#: of ~30 words takes ~1.5 s), save a streaming reply every 0.2 s, and hold turn locks with
#: a short lease (tests/settings.py reads these variables).
SERVER_ENV = {
    "PYHUB_AI_OFFLINE_MODEL_DELAY": "0.05",
    "PYHUB_AI_STREAM_SAVE_INTERVAL": "0.2",
    "PYHUB_AI_TURN_LOCK_LEASE": str(LEASE),
}
#: Longest wait for the turn lock of a killed process to expire.
LEASE_TIMEOUT = LEASE + 5
#: ``stream_delta`` frames the client receives before the server is killed (several saves).
DELTAS_BEFORE_KILL = 12


# ---- the servers ------------------------------------------------------------------------------


def _missing_servers() -> str | None:
    """Why this run cannot start several processes, or ``None`` when it can."""
    engine = settings.DATABASES["default"]["ENGINE"]
    redis_url = getattr(settings, "REDIS_URL", "")
    missing = []
    if "postgresql" not in engine:
        missing.append(f"DATABASE_URL pointing to PostgreSQL (the database is {engine})")
    if not redis_url or "RedisChannelLayer" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        missing.append("REDIS_URL (the Redis channel layer)")
    if not missing:
        return None
    return (
        f"The multi-process tests need {' and '.join(missing)}: several daphne processes share "
        "channel-layer groups only through Redis, and SQLite is not for several writers. "
        "`make test` runs them in its PostgreSQL + Redis run."
    )


@pytest.fixture
def servers(request, transactional_db) -> Iterator[list[LiveServer]]:
    """Two daphne processes serving the demo on the test database and the same Redis."""
    if reason := _missing_servers():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:  # configured but down: an error, never a skip
        pytest.fail(f"REDIS_URL={settings.REDIS_URL} does not answer: {exc}")

    with run_daphnes(2, f"daphne-{request.node.name}", extra_env=SERVER_ENV) as started:
        yield started
    # Shown by pytest only when the test failed.
    for number, server in enumerate(started, start=1):
        print(f"---- daphne #{number} (pid {server.pid}) output ({server.log_path}) ----\n{server.output()}")


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="multi", password="multi-pass-123")


@pytest.fixture
def session_cookie(user) -> str:
    """A ``Cookie`` header of a signed-in session of ``user`` (what the login view stores)."""
    return signed_in_cookie(user)


@pytest.fixture
def room() -> LLMChatRoom:
    return LLMChatRoom.objects.create()  # its hook creates the (owner-less) conversation


def types(frames: list[dict]) -> list[str]:
    return [frame["type"] for frame in frames]


def streamed_text(frames: list[dict]) -> str:
    return "".join(frame["text"] for frame in frames if frame["type"] == "stream_delta")


async def open_and_finish_starter(server: LiveServer, room: LLMChatRoom, cookie: str, name: str) -> tuple[Client, dict]:
    """The first tab of an empty thread: the consumer starts the conversation itself (hidden
    starter message, streamed reply); wait until that reply is stored. Returns its message."""
    client, history = await Client.open(server, room.conversation_id, cookie, name)
    assert history == []
    frames = await client.until("stream_end")
    assert types(frames)[0] == "stream_start"
    starter_reply = frames[-1]["message"]
    assert starter_reply["status"] == "complete" and starter_reply["text"]
    return client, starter_reply


async def thread_rows(room: LLMChatRoom, user) -> list[ConversationMessage]:
    return [
        row
        async for row in ConversationMessage.objects.filter(conversation_id=room.conversation_id, user=user).order_by("pk")
    ]


async def wait_until_unlocked(key: str, timeout: float) -> None:
    """Wait until no live turn holds the thread ``key``."""
    deadline = time.monotonic() + timeout
    while await is_locked(key):
        assert time.monotonic() < deadline, f"the thread {key} is still locked after {timeout:.1f} s"
        await asyncio.sleep(0.1)


def row_summary(row: ConversationMessage) -> tuple:
    return (row.pk, row.role, row.status, row.visible, row.message.text, str(row.turn_id))


def history_summary(message: dict) -> tuple:
    return (message["id"], message["role"], message["status"], message["text"], message["turn_id"])


# ---- the tests ------------------------------------------------------------------------------------


async def test_two_tabs_on_two_processes_see_the_same_turn_live(servers, room, user, session_cookie) -> None:
    first, second = servers
    tab1, starter_reply = await open_and_finish_starter(first, room, session_cookie, "tab 1 (daphne #1)")
    tab2, history = await Client.open(second, room.conversation_id, session_cookie, "tab 2 (daphne #2)")
    try:
        assert [history_summary(m) for m in history] == [history_summary(starter_reply)]

        await tab1.send_message("Hello from tab 1")
        own, relayed = await asyncio.gather(tab1.until("stream_end"), tab2.until("stream_end"))

        # Tab 1 (the sender): echo, start, one delta per word, end.
        assert types(own)[:2] == ["message", "stream_start"]
        echo, start, end = own[0]["message"], own[1], own[-1]
        assert echo["role"] == "human" and echo["text"] == "Hello from tab 1" and echo["status"] == "complete"
        reply = end["message"]
        assert reply["status"] == "complete" and reply["id"] == start["message_id"]
        assert "Hello from tab 1" in reply["text"]
        assert streamed_text(own) == reply["text"]

        # Tab 2, on the other process, through the Redis channel layer: the same turn, live.
        assert types(relayed)[:2] == ["message", "stream_start"], types(relayed)
        assert relayed[0]["message"] == echo
        assert relayed[1] == start
        deltas = [frame for frame in relayed if frame["type"] == "stream_delta"]
        assert deltas, f"tab 2 received no stream_delta before stream_end: {types(relayed)}"
        assert types(relayed) == ["message", "stream_start", *["stream_delta"] * len(deltas), "stream_end"]
        assert all(frame["turn_id"] == start["turn_id"] for frame in relayed[1:])
        assert streamed_text(relayed) == reply["text"]
        assert relayed[-1]["message"]["text"] == reply["text"]
        assert relayed[-1]["message"]["id"] == reply["id"]

        # Stored exactly once, whichever process served which tab.
        turn = [row_summary(row) for row in await thread_rows(room, user) if str(row.turn_id) == start["turn_id"]]
        assert turn == [
            (echo["id"], "human", "complete", True, "Hello from tab 1", start["turn_id"]),
            (reply["id"], "ai", "complete", True, reply["text"], start["turn_id"]),
        ]
        rows = await thread_rows(room, user)
        assert [(row.role, row.status, row.visible) for row in rows] == [
            ("human", "complete", False),  # the hidden starter
            ("ai", "complete", True),
            ("human", "complete", True),
            ("ai", "complete", True),
        ]
    finally:
        await tab1.close()
        await tab2.close()


async def test_a_reply_cut_by_a_killed_process_is_kept_as_interrupted(servers, room, user, session_cookie) -> None:
    first, second = servers
    tab, starter_reply = await open_and_finish_starter(first, room, session_cookie, "tab (daphne #1)")

    # One complete turn, then the turn that the kill cuts.
    await tab.send_message("First question")
    frames = await tab.until("stream_end")
    first_echo, first_reply = frames[0]["message"], frames[-1]["message"]
    assert first_reply["status"] == "complete"
    before_kill = [row_summary(row) for row in await thread_rows(room, user)]
    assert [status for _, _, status, *_ in before_kill] == ["complete"] * 4

    await tab.send_message("Second question")
    frames = [await tab.recv(), await tab.recv()]
    assert types(frames) == ["message", "stream_start"], frames
    cut_echo, cut_start = frames[0]["message"], frames[1]
    while types(frames).count("stream_delta") < DELTAS_BEFORE_KILL:
        frames.append(await tab.recv())
        assert frames[-1]["type"] == "stream_delta", frames[-1]

    os.kill(first.pid, signal.SIGKILL)
    first.process.wait(FRAME_TIMEOUT)
    killed_at = time.monotonic()
    # The connection drops; frames the process wrote before dying may still arrive.
    with pytest.raises(ConnectionClosed):
        while True:
            frames.append(await tab.recv())
            assert frames[-1]["type"] == "stream_delta", frames[-1]
    received = streamed_text(frames)

    # What the dead process left: the reply `streaming`, with the text saved before the kill.
    rows = {row.pk: row for row in await thread_rows(room, user)}
    cut_reply_row = rows[cut_start["message_id"]]
    saved = cut_reply_row.message.text
    assert cut_reply_row.status == "streaming"
    assert saved, "nothing of the reply was saved before the kill (PYHUB_AI_STREAM_SAVE_INTERVAL=0.2)"
    assert received.startswith(saved), (saved, received)
    assert rows[cut_echo["id"]].status == "complete"
    key = thread_key(room.conversation_id, user.pk, "")

    # While the dead turn's lease lasts, a tab on the other process sees the reply `streaming`
    # (checked only when the lease has a second left, so it cannot expire during the check).
    lock = await ThreadLock.objects.filter(key=key).afirst()
    assert lock is not None, "the killed turn's lock is gone"
    if lock.expires_at - timezone.now() > timedelta(seconds=1):
        peek, history = await Client.open(second, room.conversation_id, session_cookie, "peek (daphne #2)")
        await peek.close()
        assert history[-1]["id"] == cut_start["message_id"]
        assert (history[-1]["status"], history[-1]["text"]) == ("streaming", saved)

    # Until the lease expires, no other turn may start in the thread; wait for that.
    await wait_until_unlocked(key, LEASE_TIMEOUT - (time.monotonic() - killed_at))

    # The user reloads: the page connects to the process that is still running.
    tab2, history = await Client.open(second, room.conversation_id, session_cookie, "tab (daphne #2)")
    try:
        assert [history_summary(m) for m in history] == [
            history_summary(starter_reply),
            history_summary(first_echo),
            history_summary(first_reply),
            history_summary(cut_echo),
            (cut_start["message_id"], "ai", "interrupted", saved, cut_start["turn_id"]),
        ]
        # Stored as interrupted too, and nothing that was complete before the kill changed.
        rows_after = [row_summary(row) for row in await thread_rows(room, user)]
        assert rows_after[:4] == before_kill
        assert rows_after[4:] == [
            (cut_echo["id"], "human", "complete", True, "Second question", cut_start["turn_id"]),
            (cut_start["message_id"], "ai", "interrupted", True, saved, cut_start["turn_id"]),
        ]

        # A new turn on the surviving process works (it takes over the expired lock).
        await tab2.send_message("Third question")
        frames = await tab2.until("stream_end")
        assert types(frames)[:2] == ["message", "stream_start"]
        reply = frames[-1]["message"]
        assert reply["status"] == "complete" and "Third question" in reply["text"]
        assert streamed_text(frames) == reply["text"]
        rows_final = [row_summary(row) for row in await thread_rows(room, user)]
        assert rows_final[:6] == rows_after
        assert [(role, status) for _, role, status, *_ in rows_final[6:]] == [("human", "complete"), ("ai", "complete")]
        # The turn releases the thread's lock just after its last frame.
        await wait_until_unlocked(key, FRAME_TIMEOUT)
    finally:
        await tab2.close()


async def test_five_tabs_on_two_processes_start_an_empty_thread_once(servers, room, user) -> None:
    """Five tabs of one user open the room's empty thread together, spread over both processes:
    one hidden starter, one greeting (one model call), and every tab shows that greeting."""
    await open_empty_thread_in_many_tabs(servers, room, user)
