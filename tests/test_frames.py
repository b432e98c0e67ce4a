"""Client frames that break the protocol get a short error frame; nothing is stored; the room keeps working."""
from __future__ import annotations

import pytest

from pyhub_ai.models import Conversation, ConversationMessage

from .conftest import fake_model
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def room(user_a, use_model):
    use_model(fake_model("still here"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    yield communicator
    await communicator.disconnect()


BAD_FRAMES = [
    pytest.param({"text_data": "not json"}, "invalid_frame", id="not-json"),
    pytest.param({"text_data": "[1, 2]"}, "invalid_frame", id="json-array"),
    pytest.param({"bytes_data": b"\x00\x01"}, "invalid_frame", id="binary"),
    pytest.param({"text_data": '{"type": "dance"}'}, "invalid_frame", id="unknown-type"),
    pytest.param({"text_data": '{"text": "no type"}'}, "invalid_frame", id="missing-type"),
    pytest.param({"text_data": '{"type": "user_message"}'}, "invalid_frame", id="missing-text"),
    pytest.param({"text_data": '{"type": "user_message", "text": 42}'}, "invalid_frame", id="text-not-string"),
    pytest.param({"text_data": '{"type": "user_message", "text": "   "}'}, "empty_message", id="blank-text"),
    pytest.param({"text_data": '{"type": "user_message", "text": "' + "x" * 32_001 + '"}'}, "message_too_long", id="too-long"),
    pytest.param({"text_data": '{"type": "load_history", "before": "7"}'}, "invalid_frame", id="bad-cursor"),
]


@pytest.mark.parametrize("frame, code", BAD_FRAMES)
async def test_a_bad_frame_gets_an_error_frame_stores_nothing_and_the_room_still_answers(room, frame, code):
    await room.send_to(**frame)
    error = await room.receive_json_from()
    assert error["type"] == "error" and error["code"] == code
    assert error["message"] and len(error["message"]) < 120
    assert await ConversationMessage.objects.acount() == 0

    await room.send_json_to({"type": "user_message", "text": "valid now"})
    frames = await receive_until(room, "stream_end")
    assert frames[-1]["message"]["text"] == "still here"


async def test_the_message_length_limit_follows_the_setting(user_a, use_model, settings):
    settings.PYHUB_AI_MAX_MESSAGE_LENGTH = 5
    use_model(fake_model("ok"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    welcome = (await receive_until(communicator, "history"))[0]
    assert welcome["max_message_length"] == 5
    await communicator.send_json_to({"type": "user_message", "text": "123456"})
    assert (await communicator.receive_json_from())["code"] == "message_too_long"
    await communicator.send_json_to({"type": "user_message", "text": "12345"})
    assert (await receive_until(communicator, "stream_end"))[-1]["message"]["text"] == "ok"
    await communicator.disconnect()


async def test_error_frames_follow_the_visitors_language(user_a, use_model):
    use_model(fake_model("ok"))
    conversation = await Conversation.objects.acreate(user=user_a)
    from channels.testing import WebsocketCommunicator

    from .routing import application

    communicator = WebsocketCommunicator(
        application, f"/ws/plain/{conversation.pk}/", headers=[(b"accept-language", b"ko-KR,ko;q=0.9,en;q=0.8")]
    )
    communicator.scope["user"] = user_a
    await communicator.connect()
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": " "})
    error = await communicator.receive_json_from()
    assert error["code"] == "empty_message"
    assert error["message"] == "메시지가 비어 있습니다."
    await communicator.disconnect()


async def test_old_database_connections_are_closed_once_per_interval_not_before_every_frame(user_a, use_model, monkeypatch):
    from pyhub_ai import consumers

    checks = []

    async def counted_close():
        checks.append(1)

    monkeypatch.setattr(consumers, "aclose_old_connections", counted_close)
    monkeypatch.setattr(consumers, "_connections_checked_at", float("-inf"))
    monkeypatch.setattr(consumers, "CONNECTION_CHECK_INTERVAL", 3600.0)  # a machine however slow stays within it
    use_model(fake_model("one", "two"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    for text in ("first", "second"):
        await communicator.send_json_to({"type": "user_message", "text": text})
        await receive_until(communicator, "stream_end")
    assert checks == [1]  # at connect; the frames within the interval after it ran none

    monkeypatch.setattr(consumers, "CONNECTION_CHECK_INTERVAL", 0.0)
    await communicator.send_json_to({"type": "load_history", "before": 10**6})
    await receive_until(communicator, "history")
    assert checks == [1, 1]  # once the interval has passed, the next event runs it
    await communicator.disconnect()
