"""A budgeted user's turns on two daphne processes (PostgreSQL + Redis) run one at a time, so
concurrent turns cannot overspend the budget by more than one turn.

Without ``pyhub_ai.budgets.spending_lock`` every tab below would be admitted at once (each sees
nothing spent yet) and the user would spend four turns on a budget of one token.
"""
from __future__ import annotations

import asyncio
import json
import os

import pytest
from asgiref.sync import sync_to_async

from example.models import LLMChatRoom
from pyhub_ai.models import ConversationMessage, UsageRecord, UsageTotal
from tests.live_server import run_daphnes
from tests.test_multiprocess import SERVER_ENV, _missing_servers
from tests.ws_client import Client, signed_in_cookie

pytestmark = [pytest.mark.multiprocess, pytest.mark.django_db(transaction=True)]

TABS = 4


@pytest.fixture
def budgeted_servers(request, transactional_db):
    if reason := _missing_servers():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    env = {**SERVER_ENV, "PYHUB_AI_TEST_BUDGETS": json.dumps({"user": {"day": {"tokens": 1}}})}
    with run_daphnes(2, f"daphne-{request.node.name}", extra_env=env) as started:
        yield started
    for number, server in enumerate(started, start=1):
        print(f"---- daphne #{number} (pid {server.pid}) output ({server.log_path}) ----\n{server.output()}")


async def test_concurrent_turns_of_one_user_on_two_processes_spend_one_turn_over_the_budget_at_most(budgeted_servers, django_user_model):
    user = await django_user_model.objects.acreate(username="spender")
    cookie = await sync_to_async(signed_in_cookie)(user)
    rooms = [await sync_to_async(LLMChatRoom.objects.create)() for _ in range(TABS)]

    async def open_room(number: int) -> dict:
        """A tab on an empty thread: the room's starter turn; the frame that ends it."""
        server = budgeted_servers[number % 2]
        client, history = await Client.open(server, rooms[number].conversation_id, cookie, f"tab {number} (daphne #{number % 2 + 1})")
        try:
            assert history == []
            return (await client.until_end_of_turn(timeout=30))[-1]
        finally:
            await client.close()

    ends = await asyncio.gather(*(open_room(number) for number in range(TABS)))

    assert sorted(end["type"] if end["type"] == "stream_end" else end["code"] for end in ends) == ["quota_exceeded"] * (TABS - 1) + ["stream_end"]
    [record] = [row async for row in UsageRecord.objects.filter(user=user)]
    assert record.input_tokens + record.output_tokens > 1  # the one turn went over the budget; no other started
    assert (await UsageTotal.objects.aget(subject=f"user:{user.pk}")).calls == 1
    answered = [end for end in ends if end["type"] == "stream_end"][0]["message"]["id"]
    room_rows = await ConversationMessage.objects.exclude(conversation_id=(await ConversationMessage.objects.aget(pk=answered)).conversation_id).acount()
    assert room_rows == 0  # the refused starters stored nothing
