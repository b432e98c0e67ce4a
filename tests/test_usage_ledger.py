"""The usage ledger: one row per model call (each agent step too), with the provider's tokens,
the model, whose call it was and its cost from ``PYHUB_AI_MODEL_PRICES``; written with the reply."""
from __future__ import annotations

from decimal import Decimal

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from django.urls import path
from langchain_core.messages import AIMessage

from pyhub_ai.consumers import AgentChatConsumer
from pyhub_ai.models import Conversation, ConversationMessage, UsageRecord, UsageTotal

from .conftest import SlowFakeChatModel, tool_calls_then
from .test_tutorial_consumer import receive_until

pytestmark = pytest.mark.django_db(transaction=True)

PRICES = {"openai:gpt-4o-mini": {"input": 0.15, "output": 0.6, "cached_input": 0.075}, "openai:gpt-4o": {"input": 2.5, "output": 10}}


def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class MiniConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"


class ToolConsumer(AgentChatConsumer):
    llm_model = "gpt-4o"  # a bare name is OpenAI's
    tools = [weather]


class ChoosingConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"
    llm_model_choices = ["openai:gpt-4o-mini", "openai:gpt-4o"]


application = URLRouter([
    path("ws/mini/<int:conversation_pk>/", MiniConsumer.as_asgi()),
    path("ws/tools/<int:conversation_pk>/", ToolConsumer.as_asgi()),
    path("ws/choose/<int:conversation_pk>/", ChoosingConsumer.as_asgi()),
])


def usage(input_tokens: int, output_tokens: int, cached: int = 0) -> dict:
    details = {"input_token_details": {"cache_read": cached}} if cached else {}
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens, **details}


async def open_tab(conversation, user, route="mini"):
    communicator = WebsocketCommunicator(application, f"/ws/{route}/{conversation.pk}/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    await receive_until(communicator, "history")
    return communicator


async def say(communicator, text="hello", until="stream_end"):
    await communicator.send_json_to({"type": "user_message", "text": text})
    return await receive_until(communicator, until)


async def one_turn(user) -> Conversation:
    """A new conversation of ``user`` with one turn answered."""
    conversation = await Conversation.objects.acreate(user=user)
    tab = await open_tab(conversation, user)
    await say(tab)
    await tab.disconnect()
    return conversation


async def ledger() -> list[UsageRecord]:
    return [row async for row in UsageRecord.objects.order_by("pk")]


@override_settings(PYHUB_AI_MODEL_PRICES=PRICES)
async def test_a_reply_records_the_providers_tokens_the_model_the_user_and_the_cost(user_a, use_model):
    use_model(tool_calls_then(AIMessage(content="Hi there.", usage_metadata=usage(1_000, 200, cached=400))))
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_tab(conversation, user_a)
    end = await say(tab)
    await tab.disconnect()

    [row] = await ledger()
    assert (row.model, row.user_id, row.visitor_key, row.conversation_id) == ("openai:gpt-4o-mini", user_a.pk, "", conversation.pk)
    assert (row.input_tokens, row.output_tokens, row.cached_tokens) == (1_000, 200, 400)
    # 600 uncached input at 0.15, 400 cached at 0.075, 200 output at 0.6, per million tokens.
    assert row.cost == Decimal("0.00024") and row.priced and not row.estimated
    reply = await ConversationMessage.objects.aget(pk=end[-1]["message"]["id"])
    assert row.turn_id == reply.turn_id
    # The conversation's totals stay as they were.
    await conversation.arefresh_from_db()
    assert (conversation.input_tokens, conversation.output_tokens) == (1_000, 200)


async def test_each_step_of_a_tool_calling_turn_is_a_row_of_its_own(user_a, use_model):
    use_model(tool_calls_then([("weather", {"city": "Seoul"})], AIMessage(content="Sunny.", usage_metadata=usage(30, 7))))
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_tab(conversation, user_a, route="tools")
    frames = await say(tab, "Weather in Seoul?")
    await tab.disconnect()

    rows = await ledger()
    assert [(row.model, row.input_tokens, row.output_tokens) for row in rows] == [("openai:gpt-4o", 10, 5), ("openai:gpt-4o", 30, 7)]
    assert {row.turn_id for row in rows} == {await ConversationMessage.objects.filter(pk=frames[-1]["message"]["id"]).values_list("turn_id", flat=True).aget()}
    total = await UsageTotal.objects.aget(subject=f"user:{user_a.pk}")
    assert (total.tokens, total.calls) == (52, 2)
    assert (await UsageTotal.objects.aget(subject="site")).tokens == 52


async def test_a_model_missing_from_the_price_table_costs_nothing_and_says_so(user_a, use_model):
    use_model(tool_calls_then("Hi."))
    conversation = await one_turn(user_a)

    [row] = await ledger()
    assert (row.cost, row.priced) == (0, False)
    assert (row.input_tokens, row.output_tokens) == (10, 5)


@override_settings(PYHUB_AI_MODEL_PRICES=PRICES)
async def test_a_chosen_model_is_recorded_and_priced_as_itself(user_a, use_model):
    use_model(tool_calls_then(AIMessage(content="Mini.", usage_metadata=usage(1_000_000, 0)), AIMessage(content="Big.", usage_metadata=usage(1_000_000, 0))))
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_tab(conversation, user_a, route="choose")
    await say(tab)
    await tab.send_json_to({"type": "select_model", "model": "openai:gpt-4o"})
    await receive_until(tab, "model_selected")
    await say(tab)
    await tab.disconnect()

    assert [(row.model, row.cost) for row in await ledger()] == [("openai:gpt-4o-mini", Decimal("0.15")), ("openai:gpt-4o", Decimal("2.5"))]


async def test_a_stopped_reply_is_counted_with_an_estimate(user_a, use_model):
    """The provider reports usage at the end of a stream: stopping every reply early must not be free."""
    use_model(SlowFakeChatModel(messages=iter([AIMessage(content=" ".join(["word"] * 40))]), calls=[], delay=0.05))
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_tab(conversation, user_a)
    await tab.send_json_to({"type": "user_message", "text": "Tell me a long story"})
    await receive_until(tab, "stream_delta")
    await tab.send_json_to({"type": "stop"})
    end = await receive_until(tab, "stream_end")
    await tab.disconnect()

    assert end[-1]["message"]["status"] == "interrupted"
    [row] = await ledger()
    assert row.estimated
    assert row.input_tokens > 0 and 0 < row.output_tokens < 40


async def test_deleting_a_conversation_keeps_what_it_spent(user_a, use_model):
    use_model(tool_calls_then("Hi."))
    conversation = await one_turn(user_a)

    await conversation.adelete()
    [row] = await ledger()
    assert (row.conversation_id, row.user_id, row.input_tokens) == (None, user_a.pk, 10)
    assert (await UsageTotal.objects.aget(subject=f"user:{user_a.pk}")).tokens == 15


async def test_the_ledger_row_is_stored_with_the_reply_or_neither_is(user_a, use_model, monkeypatch):
    """The row is written in the transaction that stores the reply (no database call of its own)."""
    from django.db import DatabaseError

    def failing_insert(*args, **kwargs):
        raise DatabaseError("the ledger table is full")

    monkeypatch.setattr("pyhub_ai.statements.insert_usage", failing_insert)
    use_model(tool_calls_then("Hi."))
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_tab(conversation, user_a)
    end = await say(tab, until="error")
    await tab.disconnect()

    assert end[-1]["code"] == "storage_error"
    reply = await ConversationMessage.objects.aget(conversation=conversation, role="ai")
    assert reply.status != "complete" and reply.content["data"]["content"] == ""
    await conversation.arefresh_from_db()
    assert (conversation.input_tokens, conversation.output_tokens) == (0, 0)
    assert await UsageRecord.objects.acount() == 0


async def test_each_model_step_of_a_langgraph_turn_is_a_row_too(user_a):
    from .test_graph_consumer import GraphConsumer, chat

    GraphConsumer.model = tool_calls_then([("get_weather", {"city": "Seoul"})], AIMessage(content="Sunny.", usage_metadata=usage(30, 7)))
    conversation = await Conversation.objects.acreate(user=user_a)
    [frames] = await chat(user_a, conversation, "weather?")

    assert frames[-1]["type"] == "stream_end"
    assert [(row.model, row.input_tokens, row.output_tokens, row.estimated) for row in await ledger()] == [
        ("openai:gpt-4o-mini", 10, 5, False), ("openai:gpt-4o-mini", 30, 7, False),
    ]  # fmt: skip
