"""Human approval of a graph's tool calls (``GraphMixin``, protocol 1.4): a turn that pauses
on LangChain's ``HumanInTheLoopMiddleware`` ends with ``approval_request``; an ``approval``
frame resumes the same turn from the checkpoint, also from a new connection after a restart."""
from __future__ import annotations

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.cache import caches
from django.test import override_settings
from django.urls import path
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware

from pyhub_ai.checkpoint import DjangoSaver, conversation_thread_id
from pyhub_ai.consumers import AgentChatConsumer
from pyhub_ai.models import Conversation, ConversationMessage

from .conftest import tool_calls_then

pytestmark = pytest.mark.django_db(transaction=True)


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def approval_agent(model, saver=None):
    middleware = HumanInTheLoopMiddleware(interrupt_on={"get_weather": {"allowed_decisions": ["approve", "edit", "reject"]}})
    return create_agent(model, [get_weather], middleware=[middleware], system_prompt="Be brief.", checkpointer=saver)


class ApprovalConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"
    saver = DjangoSaver()
    model = None

    def get_graph(self):
        return approval_agent(ApprovalConsumer.model)

    def get_checkpointer(self):
        return ApprovalConsumer.saver


application = URLRouter([path("ws/approval/<int:conversation_pk>/", ApprovalConsumer.as_asgi())])


@pytest.fixture(autouse=True)
def fresh_saver():
    ApprovalConsumer.saver = DjangoSaver()


async def open_tab(user, conversation):
    """A connected tab and the frames it received up to ``history`` and, when the thread waits
    for an approval, the ``approval_request`` after it."""
    communicator = WebsocketCommunicator(application, f"/ws/approval/{conversation.pk}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    frames = [await communicator.receive_json_from(timeout=5)]
    while frames[-1]["type"] != "history":
        frames.append(await communicator.receive_json_from(timeout=5))
    if not await communicator.receive_nothing(timeout=0.3):
        frames.append(await communicator.receive_json_from(timeout=5))
    return communicator, frames


async def until(communicator, *types):
    frames = []
    while not frames or frames[-1]["type"] not in types:
        frames.append(await communicator.receive_json_from(timeout=5))
    return frames


async def ask(communicator, text="weather in Seoul?"):
    await communicator.send_json_to({"type": "user_message", "text": text})
    return await until(communicator, "approval_request", "stream_end", "error")


async def answer(communicator, request, *decisions):
    await communicator.send_json_to({"type": "approval", "interrupt_id": request["interrupt_id"], "decisions": list(decisions)})
    return await until(communicator, "approval_request", "stream_end", "error")


async def stored(conversation):
    return [
        (row.role, row.status, row.message.content.strip(), str(row.turn_id))
        async for row in ConversationMessage.objects.filter(conversation=conversation).order_by("pk")
    ]


async def pending_interrupts(conversation, user):
    config = {"configurable": {"thread_id": conversation_thread_id(conversation, user)}}
    return (await approval_agent(ApprovalConsumer.model, DjangoSaver()).aget_state(config)).interrupts


async def test_a_tool_call_that_needs_approval_ends_the_turn_with_an_approval_request(user_a):
    ApprovalConsumer.model = model = tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Seoul.")
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, _ = await open_tab(user_a, conversation)

    frames = await ask(tab)

    assert [f["type"] for f in frames] == ["message", "stream_start", "tool_call", "approval_request"]
    request = frames[-1]
    assert request["turn_id"] == frames[1]["turn_id"] and request["message_id"] == frames[2]["message_id"]
    assert [{k: v for k, v in r.items() if k != "description"} for r in request["requests"]] == [
        {"tool_call_id": "call_0_0", "name": "get_weather", "args": {"city": "Seoul"}, "allowed_decisions": ["approve", "edit", "reject"]}
    ]
    assert request["message"]["tool_calls"] == [{"id": "call_0_0", "name": "get_weather", "args": {"city": "Seoul"}}]
    # What ran so far is stored: the question and the step that calls the tool; the tool did not run.
    assert [(role, status) for role, status, _, _ in await stored(conversation)] == [("human", "complete"), ("ai", "complete")]
    assert len(model.calls) == 1
    assert [i.id for i in await pending_interrupts(conversation, user_a)] == [request["interrupt_id"]]
    await tab.disconnect()


async def test_approve_resumes_the_same_turn_and_stores_the_tool_result_and_the_reply(user_a):
    ApprovalConsumer.model = model = tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Seoul.")
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, _ = await open_tab(user_a, conversation)
    request = (await ask(tab))[-1]

    frames = await answer(tab, request, {"type": "approve"})

    assert [f["type"] for f in frames if f["type"] != "stream_delta"] == ["stream_start", "tool_call", "tool_result", "stream_start", "stream_end"]
    assert {f["turn_id"] for f in frames} == {request["turn_id"]}
    assert frames[-1]["message"]["text"].strip() == "It is sunny in Seoul."
    rows = await stored(conversation)
    assert [(role, status, text) for role, status, text, _ in rows] == [
        ("human", "complete", "weather in Seoul?"), ("ai", "complete", ""), ("tool", "complete", "sunny in Seoul"),
        ("ai", "complete", "It is sunny in Seoul."),
    ]  # fmt: skip
    assert {turn for *_, turn in rows} == {request["turn_id"]}
    assert [m.type for m in model.calls[-1]] == ["system", "human", "ai", "tool"]
    assert await pending_interrupts(conversation, user_a) == ()
    await tab.disconnect()


async def test_edit_runs_the_tool_with_the_edited_args(user_a):
    ApprovalConsumer.model = tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Busan.")
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, _ = await open_tab(user_a, conversation)
    request = (await ask(tab))[-1]

    frames = await answer(tab, request, {"type": "edit", "edited_action": {"name": "get_weather", "args": {"city": "Busan"}}})

    assert frames[-1]["type"] == "stream_end"
    [tool_result] = [f["message"] for f in frames if f["type"] == "tool_result"]
    assert tool_result["text"].endswith("sunny in Busan") and "Seoul" not in tool_result["text"].split("Tool response:")[-1]
    assert [role for role, *_ in await stored(conversation)] == ["human", "ai", "tool", "ai"]
    await tab.disconnect()


async def test_reject_with_a_reason_does_not_run_the_tool_and_the_model_answers(user_a):
    ApprovalConsumer.model = model = tool_calls_then([("get_weather", {"city": "Seoul"})], "All right, I will not look it up.")
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, _ = await open_tab(user_a, conversation)
    request = (await ask(tab))[-1]

    frames = await answer(tab, request, {"type": "reject", "message": "Not now."})

    assert frames[-1]["type"] == "stream_end" and frames[-1]["message"]["text"].strip() == "All right, I will not look it up."
    [tool_result] = [f["message"] for f in frames if f["type"] == "tool_result"]
    assert tool_result["tool_status"] == "error" and "Not now." in tool_result["text"] and "sunny" not in tool_result["text"]
    assert [(role, status) for role, status, *_ in await stored(conversation)] == [
        ("human", "complete"), ("ai", "complete"), ("tool", "complete"), ("ai", "complete"),
    ]  # fmt: skip
    assert "Not now." in model.calls[-1][-1].content
    await tab.disconnect()


async def test_a_malformed_or_stale_approval_is_refused_and_the_request_stays_pending(user_a):
    ApprovalConsumer.model = tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Seoul.")
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, _ = await open_tab(user_a, conversation)
    request = (await ask(tab))[-1]
    before = await stored(conversation)

    refusals = []
    for frame in [
        {"type": "approval", "interrupt_id": request["interrupt_id"]},  # no decisions
        {"type": "approval", "interrupt_id": request["interrupt_id"], "decisions": [{"type": "maybe"}]},
        {"type": "approval", "interrupt_id": request["interrupt_id"], "decisions": [{"type": "edit", "edited_action": {"name": "get_weather"}}]},
        {"type": "approval", "interrupt_id": request["interrupt_id"], "decisions": [{"type": "approve"}, {"type": "approve"}]},  # 2 for 1
        {"type": "approval", "interrupt_id": request["interrupt_id"], "decisions": [{"type": "edit", "edited_action": {"name": "rm", "args": {}}}]},
        {"type": "approval", "interrupt_id": "0123456789abcdef", "decisions": [{"type": "approve"}]},  # unknown
    ]:
        await tab.send_json_to(frame)
        refusals.append((await tab.receive_json_from(timeout=5))["code"])

    assert refusals == ["invalid_frame"] * 5 + ["approval_not_pending"]
    assert await stored(conversation) == before
    assert [i.id for i in await pending_interrupts(conversation, user_a)] == [request["interrupt_id"]]

    # Answered once, the same approval again is stale.
    assert (await answer(tab, request, {"type": "approve"}))[-1]["type"] == "stream_end"
    error = (await answer(tab, request, {"type": "approve"}))[-1]
    assert error["type"] == "error" and error["code"] == "approval_not_pending"
    assert len(await stored(conversation)) == 4
    await tab.disconnect()


async def test_a_new_message_waits_for_the_pending_approval(user_a):
    ApprovalConsumer.model = tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Seoul.")
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, _ = await open_tab(user_a, conversation)
    await ask(tab)

    error = (await ask(tab, "hello?"))[-1]

    assert error["type"] == "error" and error["code"] == "approval_pending"
    assert len(await stored(conversation)) == 2
    await tab.disconnect()


async def test_an_edit_or_a_regenerate_also_waits_for_the_pending_approval(user_a):
    ApprovalConsumer.model = tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Seoul.")
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, _ = await open_tab(user_a, conversation)
    request = (await ask(tab))[-1]
    human_id = (await ConversationMessage.objects.filter(conversation=conversation, role="human").afirst()).pk

    await tab.send_json_to({"type": "edit_message", "message_id": human_id, "text": "weather in Busan?"})
    edit = await tab.receive_json_from(timeout=5)
    await tab.send_json_to({"type": "regenerate", "message_id": request["message_id"]})
    regenerate = await tab.receive_json_from(timeout=5)

    assert (edit["code"], regenerate["code"]) == ("approval_pending", "approval_pending")
    assert len(await stored(conversation)) == 2
    await tab.disconnect()


async def test_every_open_tab_of_the_thread_gets_the_request_when_the_turn_pauses(user_a):
    ApprovalConsumer.model = tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Seoul.")
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, _ = await open_tab(user_a, conversation)
    other, _ = await open_tab(user_a, conversation)

    request = (await ask(tab))[-1]

    relayed = (await until(other, "approval_request"))[-1]
    assert relayed == request
    await tab.disconnect()
    await other.disconnect()


async def test_another_users_approval_in_a_shared_room_is_refused(user_a, user_b):
    ApprovalConsumer.model = tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Seoul.")
    room = await Conversation.objects.acreate()  # owner-less: each user has a private thread
    alice, _ = await open_tab(user_a, room)
    request = (await ask(alice))[-1]
    bob, frames = await open_tab(user_b, room)
    assert [f["type"] for f in frames] == ["welcome", "history"]  # Alice's request is not Bob's

    error = (await answer(bob, request, {"type": "approve"}))[-1]

    assert error["type"] == "error" and error["code"] == "approval_not_pending"
    assert [i.id for i in await pending_interrupts(room, user_a)] == [request["interrupt_id"]]
    assert await alice.receive_nothing(timeout=0.3)
    await alice.disconnect()
    await bob.disconnect()


async def test_the_request_is_sent_again_on_connect_and_answered_after_a_restart_from_another_tab(user_a):
    ApprovalConsumer.model = tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Seoul.")
    conversation = await Conversation.objects.acreate(user=user_a)
    first, _ = await open_tab(user_a, conversation)
    request = (await ask(first))[-1]
    await first.disconnect()
    ApprovalConsumer.saver = DjangoSaver()  # a new process: nothing remembered, the checkpoint is in the database

    tab, frames = await open_tab(user_a, conversation)
    other, other_frames = await open_tab(user_a, conversation)

    assert [f["type"] for f in frames] == ["welcome", "history", "approval_request"]
    again = frames[-1]
    assert {k: again[k] for k in ("interrupt_id", "requests", "turn_id", "message_id")} == {
        k: request[k] for k in ("interrupt_id", "requests", "turn_id", "message_id")
    }
    assert other_frames[-1]["interrupt_id"] == request["interrupt_id"]

    frames = await answer(tab, again, {"type": "approve"})

    assert frames[-1]["type"] == "stream_end" and frames[-1]["message"]["text"].strip() == "It is sunny in Seoul."
    assert (await until(other, "stream_end"))[-1]["message"]["id"] == frames[-1]["message"]["id"]  # the other tab saw it
    assert [(role, text) for role, _, text, _ in await stored(conversation)] == [
        ("human", "weather in Seoul?"), ("ai", ""), ("tool", "sunny in Seoul"), ("ai", "It is sunny in Seoul."),
    ]  # fmt: skip
    await tab.disconnect()
    await other.disconnect()


@override_settings(PYHUB_AI_RATE_LIMIT="2/d")
async def test_resuming_counts_as_a_model_call(user_a):
    caches["default"].clear()
    ApprovalConsumer.model = tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Seoul.")
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, _ = await open_tab(user_a, conversation)
    request = (await ask(tab))[-1]  # call 1
    assert (await answer(tab, request, {"type": "approve"}))[-1]["type"] == "stream_end"  # call 2: the reply after the tool
    ApprovalConsumer.model = tool_calls_then([("get_weather", {"city": "Busan"})], "Sunny.")

    error = (await ask(tab, "and Busan?"))[-1]

    assert error["type"] == "error" and error["code"] == "rate_limited"
    caches["default"].clear()
    await tab.disconnect()
