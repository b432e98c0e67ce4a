"""The codec stores every LangChain message as JSON and gives back an equal message."""
from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage

from pyhub_ai import codec
from pyhub_ai.codec import CodecError
from pyhub_ai.history import DjangoChatMessageHistory
from pyhub_ai.models import Conversation, ConversationMessage


def through_json(message):
    """Encode, store as JSON text, read it back and decode: what a database round trip does."""
    return codec.decode(json.loads(json.dumps(codec.encode(message))))


# -- Round trips ---------------------------------------------------------------------------


def test_a_multimodal_human_message_round_trips():
    message = HumanMessage(
        content=[
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]
    )

    assert through_json(message) == message


def test_an_ai_message_with_tool_calls_usage_and_metadata_round_trips():
    message = AIMessage(
        content="Let me look that up.",
        id="run-123",
        tool_calls=[{"name": "get_weather", "args": {"city": "서울"}, "id": "call_1", "type": "tool_call"}],
        invalid_tool_calls=[
            {"name": "broken", "args": "{not json", "id": "call_2", "error": "bad JSON", "type": "invalid_tool_call"}
        ],
        usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        response_metadata={"model_name": "gpt-4o", "finish_reason": "tool_calls"},
    )

    decoded = through_json(message)

    assert decoded == message
    assert decoded.tool_calls[0]["args"] == {"city": "서울"}
    assert decoded.usage_metadata["total_tokens"] == 15


def test_a_system_message_round_trips():
    message = SystemMessage(content="You are a helpful assistant.")

    assert through_json(message) == message


def test_a_failed_tool_message_with_an_artifact_round_trips():
    message = ToolMessage(
        content="Weather service unavailable",
        tool_call_id="call_1",
        name="get_weather",
        artifact={"http_status": 503, "retries": [1, 2]},
        status="error",
    )

    decoded = through_json(message)

    assert decoded == message
    assert decoded.status == "error"
    assert decoded.artifact == {"http_status": 503, "retries": [1, 2]}


def test_an_ai_message_chunk_round_trips_as_a_chunk():
    chunk = AIMessageChunk(content="partial", usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4})

    decoded = through_json(chunk)

    assert decoded == chunk
    assert isinstance(decoded, AIMessageChunk)


def test_the_stored_form_is_langchains_dict_with_a_version():
    stored = codec.encode(HumanMessage(content="hi"))

    assert stored["v"] == 1
    assert stored["type"] == "human"
    assert stored["data"]["content"] == "hi"


# -- Rows written by django-pyhub-ai ---------------------------------------------------------

# The two payloads of the INSERT shown in the django-pyhub-ai tutorial (seed 004), verbatim.
LEGACY_HUMAN = (
    '{"_type": "HumanMessage", "_value": {"content": "hello", "additional_kwargs": {}, "response_metadata": {}, '
    '"type": "human", "name": null, "id": null, "example": false}}'
)
LEGACY_AI = (
    '{"_type": "AIMessage", "_value": {"content": "\\u4f60\\u597d\\uff0c\\u8bf7\\u95ee\\u6211\\u53ef\\u4ee5\\u5e2e'
    '\\u4f60\\u70b9\\u4ec0\\u4e48\\u5496\\u5561\\u5417\\uff1f", "additional_kwargs": {}, "response_metadata": {}, '
    '"type": "ai", "name": null, "id": "run-7c97e77c-847b-4ec9-a874-03317f4f7712", "example": false, '
    '"tool_calls": [], "invalid_tool_calls": [], "usage_metadata": {"input_tokens": 139, "output_tokens": 14, '
    '"total_tokens": 153, "input_token_details": {"audio": 0, "cache_read": 0}, '
    '"output_token_details": {"audio": 0, "reasoning": 0}}}}'
)


def test_a_legacy_human_message_is_read():
    assert codec.decode(LEGACY_HUMAN) == HumanMessage(content="hello")


def test_a_legacy_ai_message_is_read_with_its_usage():
    message = codec.decode(LEGACY_AI)

    assert isinstance(message, AIMessage)
    assert message.content == "你好，请问我可以帮你点什么咖啡吗？"
    assert message.id == "run-7c97e77c-847b-4ec9-a874-03317f4f7712"
    assert message.tool_calls == []
    assert message.usage_metadata == {
        "input_tokens": 139,
        "output_tokens": 14,
        "total_tokens": 153,
        "input_token_details": {"audio": 0, "cache_read": 0},
        "output_token_details": {"audio": 0, "reasoning": 0},
    }


def test_a_legacy_payload_already_parsed_by_a_json_field_is_read():
    message = codec.decode(json.loads(LEGACY_HUMAN))

    assert isinstance(message, HumanMessage)
    assert message.content == "hello"


# -- What cannot be read or written raises CodecError ------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param('{"v": 1, "type": "human", "data": ', id="invalid JSON text"),
        pytest.param("[1, 2, 3]", id="JSON that is not an object"),
        pytest.param(42, id="a number"),
        pytest.param({"v": 1, "type": "dataframe", "data": {"content": "x"}}, id="unknown type"),
        pytest.param({"_type": "DataFrame", "_value": {"columns": []}}, id="unknown legacy _type"),
        pytest.param({"v": 2, "type": "human", "data": {"content": "hi"}}, id="unsupported version"),
        pytest.param({"v": 1, "type": "human", "data": {"content": 5}}, id="corrupt data"),
        pytest.param({"v": 1, "type": "human"}, id="missing data"),
    ],
)
def test_an_unreadable_payload_raises_codec_error(payload):
    with pytest.raises(CodecError):
        codec.decode(payload)


def test_encoding_a_tool_message_whose_artifact_json_cannot_hold_raises_codec_error():
    message = ToolMessage(content="done", tool_call_id="call_1", artifact=object())

    with pytest.raises(CodecError, match="JSON cannot store"):
        codec.encode(message)


def test_encoding_something_that_is_not_a_message_raises_codec_error():
    with pytest.raises(CodecError):
        codec.encode({"role": "user", "content": "hi"})


def test_codec_error_keeps_the_offending_payload():
    payload = {"v": 7, "type": "human", "data": {"content": "hi"}}

    with pytest.raises(CodecError) as excinfo:
        codec.decode(payload)

    assert excinfo.value.payload == payload


# -- Corrupt rows in the database ------------------------------------------------------------


@pytest.fixture
def conversation_with_a_corrupt_row(db):
    conversation = Conversation.objects.create(session_id="corrupt")
    ConversationMessage.objects.create(conversation=conversation, role="human", content=codec.encode(HumanMessage("before")))
    ConversationMessage.objects.create(conversation=conversation, role="human", content={"v": 1, "type": "human", "data": {"content": 5}})
    ConversationMessage.objects.create(conversation=conversation, role="ai", content=codec.encode(AIMessage("after")))
    return conversation


def test_a_corrupt_row_raises_codec_error_when_its_message_is_read(conversation_with_a_corrupt_row):
    row = ConversationMessage.objects.get(conversation=conversation_with_a_corrupt_row, content__data__content=5)

    with pytest.raises(CodecError):
        row.message


def test_the_history_skips_a_corrupt_row(conversation_with_a_corrupt_row):
    history = DjangoChatMessageHistory(conversation=conversation_with_a_corrupt_row)

    assert history.messages == [HumanMessage("before"), AIMessage("after")]
