"""Tool calling: every step streamed to the client and stored in order, within limits."""
from __future__ import annotations

import asyncio

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.files.storage import default_storage
from django.urls import path
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from pyhub_ai.artifacts import ImageArtifact
from pyhub_ai.consumers import AgentChatConsumer
from pyhub_ai.models import Conversation, ConversationMessage

from .conftest import tool_calls_then

pytestmark = pytest.mark.django_db(transaction=True)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def get_time(zone: str) -> str:
    """The time in a time zone."""
    return f"12:00 in {zone}"


def broken(x: int) -> str:
    """Always fails."""
    raise RuntimeError("the tool broke")


async def slow(x: int) -> str:
    """Never answers in time."""
    await asyncio.sleep(5)
    return "late"


@tool(response_format="content_and_artifact")
def chart(title: str):
    """Draw a chart."""
    return "A chart.", ImageArtifact(PNG, alt=title)


class ToolConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"
    tools = [get_weather, get_time, broken, slow, chart]
    completed: list = []

    async def on_conversation_complete(self, human_message, ai_message, tools_output_list):
        ToolConsumer.completed.append((human_message, ai_message, tools_output_list))


application = URLRouter([path("ws/tools/<int:conversation_pk>/", ToolConsumer.as_asgi())])


async def run_turn(user, text="what is up?"):
    conversation = await Conversation.objects.acreate(user=user)
    communicator = WebsocketCommunicator(application, f"/ws/tools/{conversation.pk}/")
    communicator.scope["user"] = user
    await communicator.connect()
    while (await communicator.receive_json_from())["type"] != "history":
        pass
    await communicator.send_json_to({"type": "user_message", "text": text})
    frames = []
    while not frames or frames[-1]["type"] not in ("stream_end", "error"):
        frames.append(await communicator.receive_json_from(timeout=5))
    await communicator.disconnect()
    rows = [row async for row in ConversationMessage.objects.filter(conversation=conversation).order_by("pk")]
    return frames, rows


def kinds(rows):
    return [(row.role, row.status) for row in rows]


async def test_one_tool_call_is_streamed_stored_and_answered(user_a, use_model):
    model = use_model(tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Seoul."))
    ToolConsumer.completed = []

    frames, rows = await run_turn(user_a)

    assert [f["type"] for f in frames if f["type"] != "stream_delta"] == [
        "message", "stream_start", "tool_call", "tool_result", "stream_start", "stream_end",
    ]
    call = next(f for f in frames if f["type"] == "tool_call")
    assert call["tool_calls"] == [{"id": "call_0_0", "name": "get_weather", "args": {"city": "Seoul"}}]
    result = next(f for f in frames if f["type"] == "tool_result")["message"]
    assert (result["role"], result["text"], result["name"]) == ("tool", "sunny in Seoul", "get_weather")
    assert frames[-1]["message"]["text"].strip() == "It is sunny in Seoul."
    assert kinds(rows) == [("human", "complete"), ("ai", "complete"), ("tool", "complete"), ("ai", "complete")]
    assert len({row.turn_id for row in rows}) == 1
    assert rows[1].message.tool_calls[0]["name"] == "get_weather"
    assert model.bound_tools == ["get_weather", "get_time", "broken", "slow", "chart"]
    # The second step saw the call and its result.
    assert [m.type for m in model.calls[1]] == ["human", "ai", "tool"]
    human, ai, outputs = ToolConsumer.completed[0]
    assert human.content == "what is up?" and ai.content.strip() == "It is sunny in Seoul."
    assert [o.content for o in outputs] == ["sunny in Seoul"]


async def test_several_tools_in_one_step_sync_and_async(user_a, use_model):
    use_model(tool_calls_then([("get_weather", {"city": "Seoul"}), ("get_time", {"zone": "KST"})], "Done."))
    frames, rows = await run_turn(user_a)
    assert [r.message.content for r in rows if r.role == "tool"] == ["sunny in Seoul", "12:00 in KST"]
    assert kinds(rows) == [("human", "complete"), ("ai", "complete"), ("tool", "complete"), ("tool", "complete"), ("ai", "complete")]


@pytest.mark.parametrize("tool_name, error_text", [("broken", "RuntimeError: the tool broke"), ("slow", "did not answer"), ("nope", "no tool named")])
async def test_a_failing_slow_or_unknown_tool_becomes_an_error_result_and_the_turn_completes(
    user_a, use_model, settings, tool_name, error_text
):
    settings.PYHUB_AI_TOOL_TIMEOUT = 0.2
    model = use_model(tool_calls_then([(tool_name, {"x": 1})], "Sorry, that failed."))
    frames, rows = await run_turn(user_a)
    tool_row = next(r for r in rows if r.role == "tool")
    assert tool_row.message.status == "error" and error_text in tool_row.message.content
    assert frames[-1]["type"] == "stream_end"
    assert model.calls[1][-1].status == "error"  # the model saw the error


async def test_the_step_limit_ends_the_turn_with_an_error_and_a_valid_history(user_a, use_model, settings):
    settings.PYHUB_AI_AGENT_MAX_STEPS = 2
    use_model(tool_calls_then([("get_weather", {"city": "A"})], [("get_weather", {"city": "B"})], "never"))
    frames, rows = await run_turn(user_a)
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "llm_error"
    assert "too many steps" in frames[-1]["message"]
    # Both finished steps are stored with their results; the unfinished one is left out of prompts.
    assert kinds(rows) == [
        ("human", "complete"), ("ai", "complete"), ("tool", "complete"), ("ai", "complete"), ("tool", "complete"), ("ai", "error"),
    ]


async def test_an_image_result_is_stored_as_a_file_not_inside_the_row(user_a, use_model):
    use_model(tool_calls_then([("chart", {"title": "Sales"})], "Here is the chart."))
    frames, rows = await run_turn(user_a)
    tool_row = next(r for r in rows if r.role == "tool")
    artifact = tool_row.message.artifact
    assert artifact["type"] == "image" and artifact["alt"] == "Sales"
    assert default_storage.exists(artifact["name"])
    assert "PNG" not in str(tool_row.content)
    result = next(f for f in frames if f["type"] == "tool_result")["message"]
    assert result["artifact"]["url"] == artifact["url"]
    default_storage.delete(artifact["name"])


async def test_history_reload_shows_the_steps_and_the_next_prompt_has_a_valid_tool_sequence(user_a, use_model):
    model = use_model(tool_calls_then([("get_weather", {"city": "Seoul"})], "Sunny.", "You asked about Seoul."))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = WebsocketCommunicator(application, f"/ws/tools/{conversation.pk}/")
    communicator.scope["user"] = user_a
    await communicator.connect()
    history = [await communicator.receive_json_from() for _ in range(2)][1]
    assert history["messages"] == []
    for text in ("weather?", "what did I ask?"):
        await communicator.send_json_to({"type": "user_message", "text": text})
        while (await communicator.receive_json_from(timeout=5))["type"] != "stream_end":
            pass
    await communicator.disconnect()

    communicator = WebsocketCommunicator(application, f"/ws/tools/{conversation.pk}/")
    communicator.scope["user"] = user_a
    await communicator.connect()
    history = [await communicator.receive_json_from() for _ in range(2)][1]
    assert [(m["role"], bool(m.get("tool_calls"))) for m in history["messages"]] == [
        ("human", False), ("ai", True), ("tool", False), ("ai", False), ("human", False), ("ai", False),
    ]
    await communicator.disconnect()
    third_prompt = model.calls[2]
    assert [type(m) for m in third_prompt] == [HumanMessage, AIMessage, ToolMessage, AIMessage, HumanMessage]
    assert third_prompt[2].tool_call_id == third_prompt[1].tool_calls[0]["id"]
