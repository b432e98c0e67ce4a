"""A turn that goes wrong keeps the user's message, stores what was streamed, and the room stays usable."""
from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage

from pyhub_ai.models import Conversation, ConversationMessage

from .conftest import FailingFakeChatModel, SlowFakeChatModel, fake_model
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


async def rows_of(conversation):
    return [
        (row.role, row.status, row.message.content)
        async for row in ConversationMessage.objects.filter(conversation=conversation).order_by("pk")
    ]


@pytest.mark.parametrize("fail_after, partial", [(0, ""), (2, "partial ")])
async def test_model_failure_stores_the_human_message_and_the_partial_reply(user_a, use_model, fail_after, partial):
    use_model(FailingFakeChatModel(messages=iter([AIMessage(content="partial reply that breaks")]), fail_after=fail_after, calls=[]))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")

    await communicator.send_json_to({"type": "user_message", "text": "hello"})
    frames = await receive_until(communicator, "error")

    error = frames[-1]
    assert error["code"] == "llm_error"
    assert error["turn_id"] == frames[1]["turn_id"]
    assert "secret internal failure detail" not in str(frames)
    assert await rows_of(conversation) == [("human", "complete", "hello"), ("ai", "error", partial)]
    await communicator.disconnect()


async def test_the_next_turn_works_after_a_failure_and_leaves_the_failed_reply_out_of_the_prompt(user_a, use_model):
    failing = use_model(FailingFakeChatModel(messages=iter([AIMessage(content="broken reply")]), fail_after=1, calls=[]))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "first"})
    await receive_until(communicator, "error")

    working = use_model(fake_model("fine now"))
    await communicator.send_json_to({"type": "user_message", "text": "second"})
    frames = await receive_until(communicator, "stream_end")

    assert frames[-1]["message"]["text"] == "fine now"
    assert [(m.type, m.content) for m in working.calls[0]] == [("human", "first"), ("human", "second")]
    assert len(failing.calls) == 1
    await communicator.disconnect()


async def test_disconnecting_mid_stream_stores_the_partial_reply_as_interrupted(user_a, use_model):
    use_model(SlowFakeChatModel(messages=iter([AIMessage(content="one two three four five six seven")]), delay=0.2, calls=[]))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "tell me"})
    await receive_until(communicator, "stream_delta")

    await communicator.disconnect()

    stored = await rows_of(conversation)
    assert stored[0] == ("human", "complete", "tell me")
    role, status, text = stored[1]
    assert (role, status) == ("ai", "interrupted")
    assert "one" in text and "seven" not in text


async def test_a_second_message_while_a_reply_streams_is_refused_and_nothing_is_stored(user_a, use_model):
    use_model(SlowFakeChatModel(messages=iter([AIMessage(content="a b c d")]), delay=0.1, calls=[]))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "first"})
    await receive_until(communicator, "stream_start")

    await communicator.send_json_to({"type": "user_message", "text": "too soon"})
    frames = await receive_until(communicator, "stream_end")

    assert [f["code"] for f in frames if f["type"] == "error"] == ["turn_in_progress"]
    assert await rows_of(conversation) == [("human", "complete", "first"), ("ai", "complete", "a b c d")]
    await communicator.disconnect()
