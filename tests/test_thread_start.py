"""A thread is started once: several tabs opening an empty thread at once cause one hidden
starter message and one greeting (one model call), whatever the number of tabs.

A real daphne serves the demo (the multi-process version, two daphnes on PostgreSQL + Redis, is
in tests/test_multiprocess.py); five real websocket clients of one signed-in user open the
tutorial room's empty thread together. The test holds the thread's lock while they open (as a
turn that has just begun would), so every tab finds the thread empty and reaches the lock before
any of them may start the thread: the race of tabs opened at the same instant, every time.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from example.models import LLMChatRoom
from pyhub_ai.locks import RELEASED, thread_key
from pyhub_ai.models import ConversationMessage, ThreadLock
from tests.live_server import LiveServer, run_daphnes
from tests.ws_client import Client, asigned_in_cookie

pytestmark = pytest.mark.django_db(transaction=True)

TABS = 5
#: The offline model waits this long between words: its greeting streams for about a second.
SERVER_ENV = {"PYHUB_AI_OFFLINE_MODEL_DELAY": "0.03"}


async def shown_messages(client: Client, wanted: int) -> dict[int, dict]:
    """The messages a tab shows (from ``history``, ``message`` and ``stream_end`` frames), read
    until ``wanted`` of them are complete; every frame must be one the page expects."""
    shown: dict[int, dict] = {}
    while sum(message["status"] == "complete" for message in shown.values()) < wanted:
        frame = await client.recv()
        assert frame["type"] != "error", f"{client.name}: {frame}"
        if frame["type"] == "history":
            shown.update({message["id"]: message for message in frame["messages"]})
        elif frame["type"] in ("message", "stream_end"):
            shown[frame["message"]["id"]] = frame["message"]
    return shown


async def frames_until_quiet(client: Client, quiet: float = 2.0) -> list[dict]:
    """The frames a tab receives until none arrives for ``quiet`` seconds."""
    frames = []
    while True:
        try:
            frames.append(await client.recv(timeout=quiet))
        except AssertionError:  # no frame within ``quiet`` seconds
            return frames


async def open_empty_thread_in_many_tabs(servers: Sequence[LiveServer], room: LLMChatRoom, user) -> None:
    """Open ``TABS`` tabs of ``user`` on ``room`` at once (spread over ``servers``); check that
    the thread was started once and that every tab shows the one greeting."""
    cookie = await asigned_in_cookie(user)
    key = thread_key(room.conversation_id, user.pk, "")
    await ThreadLock.objects.acreate(key=key, token="held-by-the-test", expires_at=timezone.now() + timedelta(minutes=1))
    tabs = await asyncio.gather(*(
        Client.connect(servers[number % len(servers)], f"/ws/example/chat/{room.conversation_id}/", cookie, f"tab {number}")
        for number in range(TABS)
    ))
    try:
        for tab in tabs:
            assert [(await tab.recv())["type"], (await tab.recv())["messages"]] == ["welcome", []]
        await asyncio.sleep(0.5)  # every tab now waits for the lock (the test passes without this pause too)
        await ThreadLock.objects.filter(key=key).aupdate(token=RELEASED, expires_at=timezone.now())

        shown = await asyncio.gather(*(shown_messages(tab, wanted=1) for tab in tabs))
        # A tab that did not start the thread waited for its lock; when it gets it, it must find
        # the thread started and show that greeting again, never start a second one.
        later = await asyncio.gather(*(frames_until_quiet(tab) for tab in tabs))
        rows = [
            (row.role, row.visible, row.status)
            async for row in ConversationMessage.objects.filter(conversation_id=room.conversation_id).order_by("pk")
        ]
        assert rows == [("human", False, "complete"), ("ai", True, "complete")]
        greeting = await ConversationMessage.objects.filter(conversation_id=room.conversation_id, role="ai").aget()
        for tab_shows, frames in zip(shown, later):
            assert list(tab_shows) == [greeting.pk]
            assert tab_shows[greeting.pk]["text"]
            assert {(frame["type"], frame["message"]["id"]) for frame in frames} <= {("message", greeting.pk)}
    finally:
        for tab in tabs:
            await tab.close()


async def test_five_tabs_opening_an_empty_thread_start_it_once(request, transactional_db, user_a):
    room = await sync_to_async(LLMChatRoom.objects.create)()
    with run_daphnes(1, f"daphne-{request.node.name}", extra_env=SERVER_ENV) as servers:
        await open_empty_thread_in_many_tabs(servers, room, user_a)
