"""The lighter OpenAI streaming path (``pyhub_ai.openai_stream``) is invisible to users.

Every test runs the same turn twice through the websocket consumer against the local
OpenAI-compatible server (tests/fake_openai.py): once with ``PYHUB_AI_LLM_FAST_STREAM`` on (the
default, and the test checks the fast path really streamed it) and once off (LangChain's
``ChatOpenAI.astream``). The frames the client receives, the rows stored and the requests the
server received must be the same, apart from values that differ between any two turns (ids,
times, LangChain's random run id).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_openai import ChatOpenAI

from example.models import LLMChatRoom
from pyhub_ai.consumers import AgentChatConsumer
from pyhub_ai.llm import _openai_model
from pyhub_ai.mixins import chat
from pyhub_ai.models import Conversation, ConversationMessage

from .fake_openai import FakeOpenAI, Reply, ToolCall
from .live_server import run_daphne
from .ws_client import Client, asigned_in_cookie

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sk-test-fast-stream-1234"
REPLY = "Hello there, this reply arrives word by word with usage at the end."


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class PlainConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"
    llm_system_prompt_template = "You are terse."


class ToolConsumer(PlainConsumer):
    tools = [get_weather]


class Recorder(AsyncCallbackHandler):
    """A callback handler configured by the consumer: what it saw of the model's run."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.ended = 0

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)

    async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.ended += 1


class OwnModelConsumer(PlainConsumer):
    """Returns its own ``ChatOpenAI`` (``model_options`` set by the test)."""

    model_options: dict[str, Any] = {}

    def get_llm(self):
        return ChatOpenAI(model="gpt-4o-mini", api_key=KEY, stream_usage=True, **self.model_options)


application = URLRouter(
    [
        path("ws/plain/<int:conversation_pk>/", PlainConsumer.as_asgi()),
        path("ws/tools/<int:conversation_pk>/", ToolConsumer.as_asgi()),
        path("ws/own/<int:conversation_pk>/", OwnModelConsumer.as_asgi()),
    ]
)


@pytest.fixture(params=[False, True], ids=["connection-close", "keep-alive-chunked"])
def server(request, settings, monkeypatch):
    """The local server, once closing each connection after its reply, once keeping
    connections alive with chunked bodies, as api.openai.com does."""
    with FakeOpenAI(reply=REPLY, keep_alive=request.param) as fake:
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
        settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = KEY, fake.base_url
        settings.PYHUB_AI_RATE_LIMIT = None
        _openai_model.cache_clear()  # a cached client belongs to an earlier test's event loop
        yield fake
    _openai_model.cache_clear()


@pytest.fixture
def streams(monkeypatch) -> list[str]:
    """The kind of stream (``OpenAIReplyStream`` or ``ReplyStream``) of every model call."""
    used: list[str] = []
    original = chat.reply_stream

    def recording(llm, prompt):
        stream = original(llm, prompt)
        used.append(type(stream).__name__)
        return stream

    monkeypatch.setattr(chat, "reply_stream", recording)
    return used


async def run_turn(route: str, user, text: str = "What is the weather in Seoul?") -> dict[str, Any]:
    """One turn in a new conversation: the frames after ``history`` up to the turn's last one,
    the stored rows and the conversation's token totals."""
    conversation = await Conversation.objects.acreate(user=user)
    communicator = WebsocketCommunicator(application, f"/ws/{route}/{conversation.pk}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    assert [(await communicator.receive_json_from(timeout=5))["type"] for _ in range(2)] == ["welcome", "history"]
    await communicator.send_json_to({"type": "user_message", "text": text})
    frames = [await communicator.receive_json_from(timeout=10)]
    while frames[-1]["type"] not in ("stream_end", "error"):
        frames.append(await communicator.receive_json_from(timeout=10))
    await communicator.disconnect()
    rows = [
        row async for row in ConversationMessage.objects.filter(conversation=conversation)
        .order_by("pk").values("role", "content", "status", "visible", "token_count")
    ]  # fmt: skip
    await conversation.arefresh_from_db()
    return {
        "frames": comparable(frames),
        "rows": comparable(rows),
        "tokens": (conversation.input_tokens, conversation.output_tokens),
    }


def comparable(value: Any, seen: dict | None = None) -> Any:
    """``value`` with what differs between any two turns replaced by its order of appearance:
    row ids, turn ids, times, and LangChain's run ids (``lc_run-...``)."""
    seen = {} if seen is None else seen
    if isinstance(value, dict):
        return {
            key: (f"<{key} {seen.setdefault(item, len(seen))}>" if key in ("id", "turn_id", "message_id", "created_at") and item is not None else comparable(item, seen))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [comparable(item, seen) for item in value]
    if isinstance(value, str) and value.startswith("lc_run-"):
        return "<lc_run>"
    return value


async def both_paths(settings, server: FakeOpenAI, route: str, user, *replies, before_each=None) -> tuple[dict, dict]:
    """The same turn (the server answering ``replies``; ``before_each()`` called first) with the
    fast path, then without; each result also holds the requests the server received."""
    results = []
    for fast in (True, False):
        settings.PYHUB_AI_LLM_FAST_STREAM = fast
        if before_each is not None:
            before_each()
        server.answer_with(*replies)
        before = len(server.requests)
        result = await run_turn(route, user)
        result["requests"] = [(r.method, r.path, r.headers, r.body) for r in server.requests[before:]]
        results.append(result)
    return results[0], results[1]


@pytest.mark.parametrize(
    "reply",
    [
        Reply(text=REPLY),
        Reply(text=REPLY, finish_reason="length", delta_extra={"refusal": None, "reasoning_content": "thinking"}),
        Reply(text="Let me look.", tool_calls=[ToolCall("get_weather", '{"city": "Seoul"}', id="call_weather")]),
        Reply(text=REPLY, error_after=3),
    ],
    ids=["plain", "length-with-extra-fields", "tool-call", "error-midway"],
)
async def test_the_fast_reply_is_the_sum_of_the_chunks_astream_yields(server, reply):
    """``OpenAIReplyStream.reply()`` against ``ChatOpenAI.astream``, message to message (the
    position of the last chunk, usage, metadata, tool call chunks), not only as stored."""
    from langchain_core.messages import HumanMessage
    from langchain_core.messages.ai import add_ai_message_chunks

    from pyhub_ai.openai_stream import openai_reply_stream

    llm = ChatOpenAI(model="gpt-4o-mini", api_key=KEY, base_url=server.base_url, stream_usage=True, max_retries=0)
    prompt = [HumanMessage("What is the weather in Seoul?")]
    server.answer_with(reply)
    chunks = []
    with pytest.raises(Exception) if reply.error_after else nullcontext() as standard_error:
        async for chunk in llm.astream(prompt):
            chunks.append(chunk)
    server.answer_with(reply)
    stream = openai_reply_stream(llm, prompt)
    assert stream is not None
    texts = []
    with pytest.raises(Exception) if reply.error_after else nullcontext() as fast_error:
        async for text in stream.texts():
            texts.append(text)
    expected = add_ai_message_chunks(chunks[0], *chunks[1:])
    assert comparable(stream.reply().model_dump()) == comparable(expected.model_dump())
    assert "".join(texts) == "".join(chunk.text for chunk in chunks)
    if reply.error_after:
        assert type(fast_error.value) is type(standard_error.value) and str(fast_error.value) == str(standard_error.value)
    else:
        assert expected.chunk_position == "last"


async def test_a_plain_reply_with_usage_is_streamed_and_stored_the_same(settings, server, streams, user_a):
    fast, standard = await both_paths(settings, server, "plain", user_a, REPLY)
    assert streams == ["OpenAIReplyStream", "ReplyStream"]
    assert fast == standard
    assert fast["frames"][-1]["message"]["text"] == REPLY
    assert fast["rows"][1]["content"]["data"]["usage_metadata"]["output_tokens"] == len(REPLY.split())
    assert fast["rows"][1]["content"]["data"]["response_metadata"]["finish_reason"] == "stop"


async def test_the_request_is_the_same_byte_for_byte(settings, server, streams, user_a):
    fast, standard = await both_paths(settings, server, "plain", user_a, REPLY)
    assert fast["requests"] == standard["requests"]
    (method, url, headers, body), = fast["requests"]
    assert headers["authorization"] == f"Bearer {KEY}"
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}


async def test_tool_calls_with_streamed_arguments_are_run_and_stored_the_same(settings, server, streams, user_a):
    call = ToolCall("get_weather", '{"city": "Seoul"}', id="call_weather")
    fast, standard = await both_paths(settings, server, "tools", user_a, Reply(tool_calls=[call]), "It is sunny in Seoul.")
    assert streams == ["OpenAIReplyStream"] * 2 + ["ReplyStream"] * 2
    assert fast == standard
    assert [f["type"] for f in fast["frames"] if f["type"] in ("tool_call", "tool_result", "stream_end")] == ["tool_call", "tool_result", "stream_end"]
    tool_call = next(f for f in fast["frames"] if f["type"] == "tool_call")["tool_calls"][0]
    assert (tool_call["name"], tool_call["args"]) == ("get_weather", {"city": "Seoul"})
    # The second request carries the tool call and its result, as the standard path sends them.
    assert fast["requests"][1][3]["messages"][-1]["content"] == "sunny in Seoul"


async def test_refusal_and_reasoning_fields_of_deltas_are_handled_the_same(settings, server, streams, user_a):
    reply = Reply(text=REPLY, delta_extra={"refusal": None, "reasoning_content": "thinking", "tool_calls": None})
    fast, standard = await both_paths(settings, server, "plain", user_a, reply)
    assert streams[0] == "OpenAIReplyStream"
    assert fast == standard
    assert fast["frames"][-1]["message"]["text"] == REPLY


async def test_a_finish_reason_other_than_stop_is_stored_the_same(settings, server, streams, user_a):
    fast, standard = await both_paths(settings, server, "plain", user_a, Reply(text=REPLY, finish_reason="length"))
    assert fast == standard
    assert fast["rows"][1]["content"]["data"]["response_metadata"]["finish_reason"] == "length"


@pytest.mark.parametrize("failure", ["error_after", "drop_after"])
async def test_a_stream_that_fails_midway_keeps_the_partial_reply_and_sends_the_same_error(settings, server, streams, user_a, failure):
    fast, standard = await both_paths(settings, server, "plain", user_a, Reply(text=REPLY, **{failure: 3}))
    assert streams[0] == "OpenAIReplyStream"
    assert fast == standard
    assert fast["frames"][-1]["type"] == "error" and fast["frames"][-1]["code"] == "llm_error"
    assert fast["rows"][1]["status"] == "error"
    assert fast["rows"][1]["content"]["data"]["content"] == "Hello there, this"


async def test_a_server_error_before_the_stream_sends_the_same_error(settings, server, streams, user_a):
    server.fail_with(500, "The server is down.")
    fast, standard = await both_paths(settings, server, "plain", user_a)
    assert streams[0] == "OpenAIReplyStream"
    assert fast == standard
    assert fast["frames"][-1]["code"] == "llm_error"


async def test_a_server_error_that_is_retried_is_retried_the_same(settings, server, streams, user_a):
    """Two 503 answers that the client may retry, then the reply: both paths send the same three
    requests (``x-stainless-retry-count`` 0, 1, 2) and answer the same."""
    fail_twice = lambda: server.fail_with(503, "Overloaded.", times=2, retry=True)  # noqa: E731
    fast, standard = await both_paths(settings, server, "plain", user_a, before_each=fail_twice)
    assert streams[0] == "OpenAIReplyStream"
    assert fast == standard
    assert [headers["x-stainless-retry-count"] for _, _, headers, _ in fast["requests"]] == ["0", "1", "2"]
    assert fast["frames"][-1]["type"] == "stream_end"


async def test_cookies_the_server_sets_are_sent_back_the_same(settings, server, streams, user_a):
    """A cookie set by the model server (as api.openai.com's load balancer does) goes back with
    the client's next request, on the fast path as on the standard one."""
    server.set_cookie = "__lb=node-7; Path=/"
    results = []
    for fast in (True, False):
        settings.PYHUB_AI_LLM_FAST_STREAM = fast
        _openai_model.cache_clear()  # a new client: an empty cookie jar
        before = len(server.requests)
        for _ in range(2):
            await run_turn("plain", user_a)
        results.append([request.headers.get("cookie") for request in server.requests[before:]])
    assert results[0] == results[1] == [None, "__lb=node-7"]
    assert streams == ["OpenAIReplyStream"] * 2 + ["ReplyStream"] * 2


async def test_a_stalled_stream_times_out_the_same(settings, server, streams, user_a):
    settings.PYHUB_AI_LLM_TIMEOUT = 1
    fast, standard = await both_paths(settings, server, "plain", user_a, Reply(text=REPLY, stall_after=2))
    assert streams[0] == "OpenAIReplyStream"
    assert fast == standard
    assert fast["frames"][-1]["message"] == "The assistant took too long to answer. Please try again."
    assert fast["rows"][1]["content"]["data"]["content"] == "Hello there,"


async def test_the_models_stream_chunk_timeout_still_applies(settings, server, streams, user_a, monkeypatch):
    monkeypatch.setattr(OwnModelConsumer, "model_options", {"base_url": server.base_url, "stream_chunk_timeout": 1})
    fast, standard = await both_paths(settings, server, "own", user_a, Reply(text=REPLY, stall_after=2))
    assert streams[0] == "OpenAIReplyStream"
    assert fast == standard
    assert fast["frames"][-1]["message"] == "The assistant took too long to answer. Please try again."


async def test_custom_headers_query_and_extra_body_reach_the_server_the_same(settings, server, streams, user_a, monkeypatch):
    options = {
        "base_url": server.base_url,
        "default_headers": {"X-Team": "blue"},
        "default_query": {"api-version": "2026-01"},
        "extra_body": {"top_k": 5},
        "temperature": 0.2,
    }
    monkeypatch.setattr(OwnModelConsumer, "model_options", options)
    fast, standard = await both_paths(settings, server, "own", user_a, REPLY)
    assert streams == ["OpenAIReplyStream", "ReplyStream"]
    assert fast == standard
    method, url, headers, body = fast["requests"][0]
    assert (url, headers["x-team"], body["top_k"], body["temperature"]) == ("/v1/chat/completions?api-version=2026-01", "blue", 5, 0.2)


@pytest.mark.parametrize("where", ["model", "config"])
async def test_a_configured_callback_handler_still_sees_every_token(settings, server, streams, user_a, monkeypatch, where):
    recorder = Recorder()
    if where == "model":
        monkeypatch.setattr(OwnModelConsumer, "model_options", {"base_url": server.base_url, "callbacks": [recorder]})
    else:
        monkeypatch.setattr(OwnModelConsumer, "model_options", {"base_url": server.base_url})
        original = OwnModelConsumer.get_llm
        monkeypatch.setattr(OwnModelConsumer, "get_llm", lambda self: original(self).with_config(callbacks=[recorder]))
    settings.PYHUB_AI_LLM_FAST_STREAM = True
    result = await run_turn("own", user_a)
    assert streams == ["ReplyStream"]
    assert "".join(recorder.tokens) == REPLY
    assert recorder.ended == 1
    assert result["frames"][-1]["message"]["text"] == REPLY


def test_a_fast_stream_setting_that_is_not_a_boolean_is_reported(settings):
    from pyhub_ai.checks import check_llm_fast_stream

    settings.PYHUB_AI_LLM_FAST_STREAM = "yes"
    assert [error.id for error in check_llm_fast_stream()] == ["pyhub_ai.E010"]
    settings.PYHUB_AI_LLM_FAST_STREAM = False
    assert check_llm_fast_stream() == []


async def test_through_a_live_daphne_the_tutorial_room_streams_and_stores_the_same(server, user_a):
    """Seed 004's consumer on a real daphne and a real websocket: the starter turn, a reply, and
    a reply that fails midway, with the fast path and without."""
    results = []
    for fast in ("1", "0"):
        server.answer_with("Let us begin.", REPLY, Reply(text=REPLY, error_after=3))
        env = {"PYHUB_AI_TEST_FAST_STREAM": fast, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        with run_daphne(f"daphne-fast-stream-{fast}", settings_module="tests.fast_stream_settings", extra_env=env) as (url, _):
            conversation = (await sync_to_async(LLMChatRoom.objects.create)()).conversation
            client, _ = await Client.open(url, conversation.pk, await asigned_in_cookie(user_a), "tab")
            frames = await client.until("stream_end")  # the room's starter turn
            for text in ("Tell me more.", "And then?"):
                await client.send_message(text)
                frames += await client.until_end_of_turn()
            await client.close()
        rows = [
            row async for row in ConversationMessage.objects.filter(conversation=conversation)
            .order_by("pk").values("role", "content", "status", "visible", "token_count")
        ]  # fmt: skip
        results.append({"frames": comparable(frames), "rows": comparable(rows)})
    fast, standard = results
    assert fast == standard
    assert [f["type"] for f in fast["frames"] if f["type"] in ("stream_end", "error")] == ["stream_end", "stream_end", "error"]
    assert fast["rows"][3]["content"]["data"]["content"] == REPLY
