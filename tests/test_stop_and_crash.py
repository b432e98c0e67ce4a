"""Stopping a reply, a model that hangs, and replies left behind by a worker that died."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from langchain_core.messages import AIMessage, HumanMessage

from pyhub_ai.models import Conversation, ConversationMessage, ThreadLock

from .conftest import HangingFakeChatModel, SlowFakeChatModel, fake_model
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


async def stored(conversation):
    return [
        (row.role, row.status, row.message.content)
        async for row in ConversationMessage.objects.filter(conversation=conversation).order_by("pk")
    ]


async def test_a_stop_frame_ends_the_reply_and_keeps_what_was_streamed_as_interrupted(user_a, use_model):
    use_model(SlowFakeChatModel(messages=iter([AIMessage(content="one two three four five six")]), delay=0.1, calls=[]))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "talk"})
    await receive_until(communicator, "stream_delta")

    await communicator.send_json_to({"type": "stop"})
    end = (await receive_until(communicator, "stream_end"))[-1]

    assert end["message"]["status"] == "interrupted"
    assert end["message"]["text"].startswith("one") and "six" not in end["message"]["text"]
    assert (await stored(conversation))[1] == ("ai", "interrupted", end["message"]["text"])

    use_model(fake_model("next one works"))
    await communicator.send_json_to({"type": "user_message", "text": "again"})
    assert (await receive_until(communicator, "stream_end"))[-1]["message"]["text"] == "next one works"
    await communicator.disconnect()


async def test_a_stop_frame_with_no_reply_streaming_does_nothing(user_a, use_model):
    use_model(fake_model("unused"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "stop"})
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


@pytest.mark.parametrize("hang_after, partial", [(0, ""), (2, "half ")])
async def test_a_model_that_hangs_past_the_timeout_fails_the_turn_and_keeps_the_partial_reply(
    user_a, use_model, settings, hang_after, partial
):
    settings.PYHUB_AI_LLM_TIMEOUT = 1
    use_model(HangingFakeChatModel(messages=iter([AIMessage(content="half done")]), hang_after=hang_after, calls=[]))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "hello"})

    error = (await receive_until(communicator, "error", timeout=5))[-1]

    assert error["code"] == "llm_error" and "too long" in error["message"]
    assert await stored(conversation) == [("human", "complete", "hello"), ("ai", "error", partial)]
    use_model(fake_model("back"))
    await communicator.send_json_to({"type": "user_message", "text": "again"})
    assert (await receive_until(communicator, "stream_end"))[-1]["message"]["text"] == "back"
    await communicator.disconnect()


async def test_the_reply_is_saved_while_it_streams(user_a, use_model, settings):
    settings.PYHUB_AI_STREAM_SAVE_INTERVAL = 0.1
    use_model(SlowFakeChatModel(messages=iter([AIMessage(content="a b c d e f g h")]), delay=0.1, calls=[]))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "go"})
    for _ in range(8):
        await receive_until(communicator, "stream_delta")

    role, status, text = (await stored(conversation))[1]
    assert (role, status) == ("ai", "streaming") and text.startswith("a b")
    await receive_until(communicator, "stream_end")
    await communicator.disconnect()


async def abandoned_thread(user):
    """A thread whose worker died mid-reply: the reply row says "streaming", its lease expired."""
    conversation = await Conversation.objects.acreate(user=user)
    await ConversationMessage.objects.abulk_create(
        [
            ConversationMessage.from_message(HumanMessage(content="question"), conversation=conversation, user=user),
            ConversationMessage.from_message(AIMessage(content="half an"), conversation=conversation, user=user, status="streaming"),
        ]
    )
    await ThreadLock.objects.acreate(key=f"{conversation.pk}:{user.pk}:", token="dead", expires_at=timezone.now() - timedelta(seconds=1))
    return conversation


async def test_a_reply_left_streaming_by_a_dead_worker_is_shown_and_stored_as_interrupted(user_a, use_model):
    use_model(fake_model("unused"))
    conversation = await abandoned_thread(user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    history = (await receive_until(communicator, "history"))[-1]
    assert [(m["text"], m["status"]) for m in history["messages"]] == [("question", "complete"), ("half an", "interrupted")]
    assert (await stored(conversation))[1] == ("ai", "interrupted", "half an")
    await communicator.disconnect()


async def test_the_next_turn_after_a_dead_worker_marks_its_reply_interrupted(user_a, use_model):
    model = use_model(fake_model("fresh answer"))
    conversation = await abandoned_thread(user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "still there?"})
    await receive_until(communicator, "stream_end")
    await communicator.disconnect()
    assert [status for _, status, _ in await stored(conversation)] == ["complete", "interrupted", "complete", "complete"]
    assert [(m.type, m.content) for m in model.calls[0]] == [("human", "question"), ("human", "still there?")]


async def test_a_live_reply_of_another_tab_is_shown_as_streaming(user_a, use_model):
    use_model(SlowFakeChatModel(messages=iter([AIMessage(content="x y z w")]), delay=0.2, calls=[]))
    conversation = await Conversation.objects.acreate(user=user_a)
    first_tab = await connect(conversation.pk, user_a, route="plain")
    await receive_until(first_tab, "history")
    await first_tab.send_json_to({"type": "user_message", "text": "go"})
    await receive_until(first_tab, "stream_delta")

    second_tab = await connect(conversation.pk, user_a, route="plain")
    history = (await receive_until(second_tab, "history"))[-1]
    assert [m["status"] for m in history["messages"]] == ["complete", "streaming"]
    assert (await receive_until(second_tab, "stream_end"))[-1]["message"]["text"] == "x y z w"
    await first_tab.disconnect()
    await second_tab.disconnect()


async def test_a_worker_shutting_down_stores_the_reply_in_progress_as_interrupted(user_a, use_model):
    import asyncio

    use_model(SlowFakeChatModel(messages=iter([AIMessage(content="one two three four five six")]), delay=0.2, calls=[]))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "talk"})
    await receive_until(communicator, "stream_delta")

    communicator.future.cancel()  # what daphne does to its applications when it stops
    with pytest.raises(asyncio.CancelledError):
        await communicator.future

    role, status, text = (await stored(conversation))[1]
    assert (role, status) == ("ai", "interrupted") and text.startswith("one")
    assert not await ThreadLock.objects.exclude(token="").aexists()  # every lock released


async def test_tokens_arriving_faster_than_the_delta_interval_share_a_frame(user_a, use_model, settings):
    settings.PYHUB_AI_STREAM_DELTA_INTERVAL = 0.15
    use_model(SlowFakeChatModel(messages=iter([AIMessage(content="a b c d e f g h i j")]), delay=0.02, calls=[]))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "go"})
    frames = await receive_until(communicator, "stream_end")
    deltas = [f["text"] for f in frames if f["type"] == "stream_delta"]
    assert "".join(deltas) == "a b c d e f g h i j"
    assert 2 <= len(deltas) <= 6  # 19 tokens, 20 ms apart: a frame per 150 ms, not one per token
    await communicator.disconnect()
