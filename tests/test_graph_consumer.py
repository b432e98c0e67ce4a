"""A chat room answered by a LangGraph graph (``GraphMixin``): the same frames and rows as a
plain tool-calling turn, and the graph's checkpoints refer to those rows."""
from __future__ import annotations

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage

from pyhub_ai.checkpoint import DjangoSaver, conversation_thread_id
from pyhub_ai.consumers import AgentChatConsumer
from pyhub_ai.history import DjangoChatMessageHistory
from pyhub_ai.models import Conversation, ConversationMessage

from .conftest import tool_calls_then

pytestmark = pytest.mark.django_db(transaction=True)


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class GraphConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"
    saver = DjangoSaver()
    model = None

    def get_graph(self):
        return create_agent(GraphConsumer.model, [get_weather], system_prompt="Be brief.")

    def get_checkpointer(self):
        return GraphConsumer.saver


application = URLRouter([path("ws/graph/<int:conversation_pk>/", GraphConsumer.as_asgi())])


async def chat(user, conversation, *texts):
    """Send ``texts`` one turn at a time; every frame of each turn after the history page."""
    communicator = WebsocketCommunicator(application, f"/ws/graph/{conversation.pk}/")
    communicator.scope["user"] = user
    await communicator.connect()
    while (await communicator.receive_json_from())["type"] != "history":
        pass
    turns = []
    for text in texts:
        await communicator.send_json_to({"type": "user_message", "text": text})
        frames = []
        while not frames or frames[-1]["type"] not in ("stream_end", "error"):
            frames.append(await communicator.receive_json_from(timeout=5))
        turns.append(frames)
    await communicator.disconnect()
    return turns


async def stored(conversation):
    return [(row.role, row.status, row.message.content) async for row in ConversationMessage.objects.filter(conversation=conversation).order_by("pk")]


async def test_a_graph_turn_streams_tool_steps_and_stores_each_message_once(user_a):
    GraphConsumer.model = tool_calls_then([("get_weather", {"city": "Seoul"})], "It is sunny in Seoul.")
    conversation = await Conversation.objects.acreate(user=user_a)

    [frames] = await chat(user_a, conversation, "weather?")

    assert [f["type"] for f in frames if f["type"] != "stream_delta"] == [
        "message", "stream_start", "tool_call", "tool_result", "stream_start", "stream_end",
    ]  # fmt: skip
    assert "".join(f["text"] for f in frames if f["type"] == "stream_delta").strip() == "It is sunny in Seoul."
    assert frames[-1]["message"]["text"].strip() == "It is sunny in Seoul."
    assert [(role, status) for role, status, _ in await stored(conversation)] == [
        ("human", "complete"), ("ai", "complete"), ("tool", "complete"), ("ai", "complete"),
    ]  # fmt: skip


async def test_the_graphs_state_is_the_stored_conversation_and_the_next_turn_continues_it(user_a):
    GraphConsumer.model = tool_calls_then([("get_weather", {"city": "Seoul"})], "Sunny.", "You asked about Seoul.")
    conversation = await Conversation.objects.acreate(user=user_a)

    await chat(user_a, conversation, "weather?", "what did I ask?")

    rows = await stored(conversation)
    assert [content.strip() for _, _, content in rows] == ["weather?", "", "sunny in Seoul", "Sunny.", "what did I ask?", "You asked about Seoul."]
    config = {"configurable": {"thread_id": conversation_thread_id(conversation, user_a)}}
    state = await create_agent(GraphConsumer.model, [get_weather], checkpointer=DjangoSaver()).aget_state(config)
    assert [m.content.strip() for m in state.values["messages"]] == [content.strip() for _, _, content in rows]
    # The model's second turn saw the whole first one.
    assert [m.type for m in GraphConsumer.model.calls[-1]] == ["system", "human", "ai", "tool", "ai", "human"]


async def test_a_conversation_from_before_the_graph_is_its_starting_state(user_a):
    conversation = await Conversation.objects.acreate(user=user_a)
    await DjangoChatMessageHistory(conversation=conversation, user=user_a).aadd_messages(
        [HumanMessage(content="my name is Ann"), AIMessage(content="Hello Ann")]
    )
    GraphConsumer.model = tool_calls_then("Your name is Ann.")

    await chat(user_a, conversation, "what is my name?")

    assert [m.type for m in GraphConsumer.model.calls[-1]] == ["system", "human", "ai", "human"]
    assert len(await stored(conversation)) == 4


async def test_a_graph_turn_gathers_its_tokens_into_stream_delta_frames_like_a_plain_turn(user_a, settings):
    settings.PYHUB_AI_STREAM_DELTA_INTERVAL = 60  # every token but the first waits for the step's end
    GraphConsumer.model = tool_calls_then("It is sunny in Seoul today.")
    conversation = await Conversation.objects.acreate(user=user_a)

    [frames] = await chat(user_a, conversation, "weather?")

    deltas = [f["text"] for f in frames if f["type"] == "stream_delta"]
    assert len(deltas) == 2, deltas  # the first token at once, the rest flushed when the step ended
    assert "".join(deltas).strip() == "It is sunny in Seoul today."
    assert frames.index(next(f for f in frames if f["type"] == "stream_delta")) < len(frames) - 1


async def test_a_graph_turn_saves_its_text_while_it_streams(user_a, settings, monkeypatch):
    """A worker that dies mid-reply loses at most PYHUB_AI_STREAM_SAVE_INTERVAL of a graph's text."""
    from pyhub_ai.history import DjangoChatMessageHistory

    settings.PYHUB_AI_STREAM_SAVE_INTERVAL = 0  # save at every token
    saved = []
    original = DjangoChatMessageHistory.asave_partial

    async def record(self, turn, text):
        saved.append(text)
        await original(self, turn, text)

    monkeypatch.setattr(DjangoChatMessageHistory, "asave_partial", record)
    GraphConsumer.model = tool_calls_then("One two three.")
    conversation = await Conversation.objects.acreate(user=user_a)

    await chat(user_a, conversation, "count")

    assert saved and saved[-1].strip() == "One two three."
    assert len(saved) >= 3
