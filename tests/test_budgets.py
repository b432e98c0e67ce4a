"""Budgets (``PYHUB_AI_BUDGETS``): a model call that would start over a budget is refused with
``quota_exceeded`` before the model runs, saying when the budget resets; nothing is stored."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.test import override_settings
from django.urls import path
from django.utils import timezone
from langchain_core.messages import AIMessage

from example.models import LLMChatRoom
from pyhub_ai.budgets import period_end
from pyhub_ai.consumers import AgentChatConsumer
from pyhub_ai.ledger import day_of
from pyhub_ai.models import Conversation, ConversationMessage, UsageRecord
from pyhub_ai.usage import SITE, VISITOR, QuotaExceeded

from .conftest import tool_calls_then
from .test_access import anonymous_visitor
from .test_tutorial_consumer import receive_until

pytestmark = pytest.mark.django_db(transaction=True)

#: Each answer of ``tool_calls_then`` uses 10 input + 5 output tokens.
TURN_TOKENS = 15
PRICES = {"openai:gpt-4o-mini": {"input": 1_000_000, "output": 0}}  # 1 per input token


def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class MiniConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"


class ToolConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"
    tools = [weather]


application = URLRouter([
    path("ws/mini/<int:conversation_pk>/", MiniConsumer.as_asgi()),
    path("ws/tools/<int:conversation_pk>/", ToolConsumer.as_asgi()),
])


async def open_tab(user, route="mini", cookie=""):
    conversation = await Conversation.objects.acreate(user=user)
    headers = [(b"cookie", cookie.encode())] if cookie else []
    communicator = WebsocketCommunicator(application, f"/ws/{route}/{conversation.pk}/", headers=headers)
    communicator.scope["user"] = user
    communicator.scope["cookies"] = dict([cookie.split("=", 1)]) if cookie else {}
    assert (await communicator.connect())[0]
    await receive_until(communicator, "history")
    return communicator


async def say(communicator, text="hello") -> dict:
    """Send a message; the frame that ends the turn (``stream_end`` or ``error``)."""
    await communicator.send_json_to({"type": "user_message", "text": text})
    while True:
        frame = await communicator.receive_json_from(timeout=3)
        if frame["type"] in ("stream_end", "error"):
            return frame


async def outcomes(communicator, turns: int) -> list[str]:
    results = []
    for _ in range(turns):
        frame = await say(communicator)
        results.append(frame["type"] if frame["type"] == "stream_end" else frame["code"])
    return results


@override_settings(PYHUB_AI_BUDGETS={"user": {"day": {"tokens": 2 * TURN_TOKENS}}})
async def test_a_user_over_their_daily_tokens_is_refused_until_tomorrow_and_nothing_is_stored(user_a, use_model):
    model = use_model(tool_calls_then("One.", "Two.", "Three."))
    tab = await open_tab(user_a)
    assert await outcomes(tab, 2) == ["stream_end", "stream_end"]
    stored = await ConversationMessage.objects.acount()

    refusal = await say(tab, "one more")
    await tab.disconnect()
    assert refusal["code"] == "quota_exceeded"
    assert refusal["message"] == "You have used up your usage budget. It resets tomorrow."
    assert await ConversationMessage.objects.acount() == stored
    assert len(model.calls) == 2


@override_settings(PYHUB_AI_BUDGETS={"user": {"month": {"cost": 15}}}, PYHUB_AI_MODEL_PRICES=PRICES)
async def test_a_monthly_cost_budget_counts_every_conversation_of_the_user(user_a, use_model):
    use_model(tool_calls_then("One.", "Two.", "Three."))
    first = await open_tab(user_a)
    assert await outcomes(first, 2) == ["stream_end", "stream_end"]  # 10 + 10: the second starts at 10 < 15
    await first.disconnect()
    second = await open_tab(user_a)  # another conversation, same budget
    assert await outcomes(second, 1) == ["quota_exceeded"]
    await second.disconnect()


@override_settings(
    PYHUB_AI_BUDGETS={
        "user": {"day": {"tokens": TURN_TOKENS}},
        "groups": {"staff": {}, "trial": {"day": {"tokens": 3 * TURN_TOKENS}}},
    }
)
async def test_a_member_of_a_group_with_its_own_entry_gets_the_groups_limits(user_a, user_b, django_user_model, use_model):
    use_model(tool_calls_then(*["Answer."] * 20))
    trial, staff = await Group.objects.acreate(name="trial"), await Group.objects.acreate(name="staff")
    await user_a.groups.aadd(trial)
    await user_b.groups.aadd(staff, trial)  # the first group listed wins: staff, no limits
    plain = await django_user_model.objects.acreate(username="carol")

    for user, expected in ((plain, ["stream_end", "quota_exceeded"]), (user_a, ["stream_end"] * 3 + ["quota_exceeded"]), (user_b, ["stream_end"] * 5)):
        tab = await open_tab(user)
        assert await outcomes(tab, len(expected)) == expected, user.username
        await tab.disconnect()


@override_settings(PYHUB_AI_BUDGETS={"anonymous": {"day": {"tokens": 1}}})
async def test_each_anonymous_session_has_a_budget_of_its_own(use_model):
    """The tutorial's room lets anonymous visitors in and starts each thread itself: the starter
    spends the session's budget, so its next message is refused; another session still starts."""
    use_model(tool_calls_then(*["Welcome."] * 5))
    room = await LLMChatRoom.objects.acreate()
    first = await anonymous_visitor(room.conversation_id)
    assert (await receive_until(first, "stream_end"))[-1]["message"]["status"] == "complete"
    assert (await say(first))["code"] == "quota_exceeded"
    second = await anonymous_visitor(room.conversation_id)
    assert (await receive_until(second, "stream_end"))[-1]["message"]["status"] == "complete"
    await first.disconnect()
    await second.disconnect()
    assert await UsageRecord.objects.acount() == 2


@override_settings(PYHUB_AI_BUDGETS={"site": {"day": {"tokens": TURN_TOKENS}}})
async def test_the_site_budget_counts_everybody_together(user_a, user_b, use_model):
    use_model(tool_calls_then("For A.", "For B."))
    tab_a = await open_tab(user_a)
    assert await outcomes(tab_a, 1) == ["stream_end"]
    tab_b = await open_tab(user_b)
    refusal = await say(tab_b)
    await tab_a.disconnect()
    await tab_b.disconnect()
    assert refusal["code"] == "quota_exceeded"
    assert refusal["message"].startswith("The assistant has used up this site's budget for now.")


@override_settings(PYHUB_AI_BUDGETS={"user": {"day": {"tokens": TURN_TOKENS}}})
async def test_a_further_step_of_a_tool_calling_turn_is_refused_once_the_budget_is_spent(user_a, use_model):
    model = use_model(tool_calls_then([("weather", {"city": "Seoul"})], "Sunny."))
    tab = await open_tab(user_a, route="tools")
    end = await say(tab, "Weather in Seoul?")
    await tab.disconnect()
    assert end["code"] == "quota_exceeded"
    assert len(model.calls) == 1
    assert await UsageRecord.objects.acount() == 1


@override_settings(PYHUB_AI_BUDGETS={"user": {"day": {"tokens": 1}}})
async def test_the_refusal_says_when_it_resets_in_the_visitors_time_zone(user_a, use_model, monkeypatch):
    real_now = timezone.now
    # Noon UTC, whenever the test runs: before 10:00 UTC the next midnight in UTC is tomorrow
    # in Kiritimati too (UTC+14), and the sentence says "tomorrow at".
    monkeypatch.setattr(timezone, "now", lambda: real_now().replace(hour=12))
    use_model(tool_calls_then("Hi."))
    tab = await open_tab(user_a, cookie="pyhub_ai_timezone=Pacific/Kiritimati")
    await say(tab)
    refusal = await say(tab)
    await tab.disconnect()
    expected = QuotaExceeded(VISITOR, period_end(day_of(timezone.now()), "day"), "Pacific/Kiritimati").client_message
    assert refusal["message"] == expected
    assert "today at" in expected  # midnight in UTC is the early afternoon in Kiritimati (UTC+14)


@pytest.mark.parametrize(
    "now, period, tz, sentence",
    [
        (datetime(2026, 11, 29, 21, 0, tzinfo=dt_timezone.utc), "day", "", "It resets tomorrow."),
        (datetime(2026, 11, 29, 21, 0, tzinfo=dt_timezone.utc), "day", "Asia/Seoul", "It resets today at 09:00."),
        (datetime(2026, 11, 30, 4, 0, tzinfo=dt_timezone.utc), "day", "America/New_York", "It resets tomorrow at 19:00."),
        (datetime(2026, 11, 10, 12, 0, tzinfo=dt_timezone.utc), "month", "", "It resets on Dec. 1, 2026."),
    ],
)
def test_the_reset_is_said_as_today_tomorrow_or_a_date(now, period, tz, sentence):
    refusal = QuotaExceeded(SITE, period_end(day_of(now), period), tz)
    assert refusal.reset_sentence(now) == sentence
