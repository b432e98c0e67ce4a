"""Every model call a visitor can cause is counted and limited, and refused before the model runs.

A real daphne serves the demo with small limits (``PYHUB_AI_RATE_LIMIT`` per visitor,
``PYHUB_AI_GLOBAL_RATE_LIMIT`` for the site, counted per day so no window ends during a test,
in a cache of its own);
real websocket clients open rooms. Conversation starters, user turns and every step of a
tool-calling turn count alike: per user, per anonymous session, per client address, and for
the whole site. Each model call stores one AI row, so the rows tell how often the model ran.
"""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore

from example.models import LLMChatRoom
from pyhub_ai.models import Conversation, ConversationMessage
from tests.live_server import run_daphne
from tests.ws_client import Client, asigned_in_cookie

pytestmark = pytest.mark.django_db(transaction=True)

VISITOR_MESSAGE = "You are sending messages too fast. Please wait a moment."


@contextlib.contextmanager
def server(name: str, rate: str = "", site_rate: str = "") -> Iterator[str]:
    env = {"PYHUB_AI_RATE_LIMIT": rate, "PYHUB_AI_GLOBAL_RATE_LIMIT": site_rate, "PYHUB_AI_TEST_CACHE_PREFIX": uuid.uuid4().hex}
    with run_daphne(f"daphne-{name}", extra_env=env) as (base_url, log_path):
        yield base_url
    print(f"---- daphne output ({log_path}) ----\n{log_path.read_text(errors='replace')[-5000:]}")


async def new_room() -> LLMChatRoom:
    return await sync_to_async(LLMChatRoom.objects.create)()


async def open_chat(base_url: str, path: str, cookie: str = "") -> Client:
    client = await Client.connect(base_url, path, cookie)
    assert (await client.recv())["type"] == "welcome"
    assert (await client.recv())["type"] == "history"
    return client


async def open_empty_thread(base_url: str, path: str, cookie: str = "") -> tuple[Client, dict]:
    """Connect to an empty thread; return the client and the frame that ends the conversation
    starter's turn (``stream_end``, or an ``error``)."""
    client = await open_chat(base_url, path, cookie)
    return client, (await client.until_end_of_turn())[-1]


async def model_calls() -> int:
    return await ConversationMessage.objects.filter(role="ai").acount()


async def test_conversation_starters_count_against_the_users_limit(request, user_a):
    rooms = [await new_room() for _ in range(4)]
    cookie = await asigned_in_cookie(user_a)
    with server(request.node.name, rate="3/d") as base_url:
        outcomes = []
        for room in rooms:
            client, last = await open_empty_thread(base_url, f"/ws/example/chat/{room.conversation_id}/", cookie)
            outcomes.append(last["type"] if last["type"] == "stream_end" else last["code"])
            await client.close()
        assert outcomes == ["stream_end", "stream_end", "stream_end", "rate_limited"]
        assert last["message"] == VISITOR_MESSAGE
        assert not await ConversationMessage.objects.filter(conversation_id=rooms[3].conversation_id).aexists()

        # The starters used the user's budget: their own next message is refused too.
        client = await open_chat(base_url, f"/ws/example/chat/{rooms[0].conversation_id}/", cookie)
        await client.send_message("One more?")
        assert (await client.until_end_of_turn())[-1]["code"] == "rate_limited"
        await client.close()
    assert await model_calls() == 3


@pytest.mark.parametrize("visitor", ["no cookie", "a new session each time"])
async def test_anonymous_visitors_are_counted_by_their_address_too(request, visitor):
    room = await new_room()
    with server(request.node.name, rate="2/d") as base_url:
        outcomes = []
        for _ in range(3):
            cookie = ""
            if visitor != "no cookie":
                session = SessionStore()
                session["visited"] = True
                await sync_to_async(session.save)()
                cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
            client, last = await open_empty_thread(base_url, f"/ws/example/chat/{room.conversation_id}/", cookie)
            outcomes.append(last["type"] if last["type"] == "stream_end" else last["code"])
            await client.close()
    assert outcomes == ["stream_end", "stream_end", "rate_limited"]
    assert await model_calls() == 2


async def test_the_site_wide_ceiling_counts_every_visitor_together(request, user_a, user_b):
    room = await new_room()
    cookie_a, cookie_b = await asigned_in_cookie(user_a), await asigned_in_cookie(user_b)
    path = f"/ws/example/chat/{room.conversation_id}/"
    with server(request.node.name, rate="100/d", site_rate="3/d") as base_url:
        tab_a, first = await open_empty_thread(base_url, path, cookie_a)  # A's starter: 1
        tab_b, second = await open_empty_thread(base_url, path, cookie_b)  # B's starter: 2
        assert (first["type"], second["type"]) == ("stream_end", "stream_end")
        await tab_a.send_message("Hello")  # 3
        assert (await tab_a.until_end_of_turn())[-1]["type"] == "stream_end"

        await tab_b.send_message("Hello")
        refusal = (await tab_b.until_end_of_turn())[-1]
        assert refusal["code"] == "rate_limited"
        assert refusal["message"] != VISITOR_MESSAGE  # it says the site is busy, not that B is too fast
        await tab_a.close()
        await tab_b.close()
    assert await model_calls() == 3
    assert not await ConversationMessage.objects.filter(user=user_b, role="human", visible=True).aexists()


async def test_every_step_of_a_tool_calling_turn_is_counted(request, user_a):
    conversation = await Conversation.objects.acreate(user=user_a)
    cookie = await asigned_in_cookie(user_a)
    with server(request.node.name, rate="3/d") as base_url:
        client = await open_chat(base_url, f"/ws/example/data/{conversation.pk}/", cookie)

        await client.send_message("Please describe the data")  # a tool call, then the answer: 2 calls
        first = await client.until_end_of_turn()
        assert [frame["type"] for frame in first].count("tool_call") == 1
        assert first[-1]["type"] == "stream_end"

        await client.send_message("Please describe the data again")  # call 3, then the step is refused
        second = await client.until_end_of_turn()
        assert [frame["type"] for frame in second].count("tool_call") == 1
        assert second[-1]["type"] == "error" and second[-1]["code"] == "rate_limited"
        await client.close()
    # Three model steps answered (two in the first turn, one in the second); the refused step
    # left an empty reply marked as an error.
    steps = [
        (row.status, bool(row.message.text or row.message.tool_calls))
        async for row in ConversationMessage.objects.filter(role="ai").order_by("pk")
    ]
    assert steps == [("complete", True), ("complete", True), ("complete", True), ("error", False)]
