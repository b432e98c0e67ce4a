"""The seed-004 tutorial consumer, end to end through WebsocketCommunicator."""
from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from example.models import LLMChatRoom
from pyhub_ai.models import ConversationMessage

from .conftest import fake_model
from .routing import application

pytestmark = pytest.mark.django_db(transaction=True)



async def connect(conversation_pk, user, route: str = "example/chat") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/ws/{route}/{conversation_pk}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def receive_until(communicator, frame_type: str, timeout: float = 3) -> list[dict]:
    """Every frame received up to and including the first one of ``frame_type``."""
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame["type"] == frame_type:
            return frames


async def test_new_room_starts_with_the_hidden_first_message_and_streams_the_reply(user_a, use_model):
    model = use_model(fake_model("你好 欢迎 光临"))
    room = await LLMChatRoom.objects.acreate()
    communicator = await connect(room.conversation_id, user_a)

    frames = await receive_until(communicator, "stream_end")

    assert [f["type"] for f in frames] == ["welcome", "history", "stream_start", *["stream_delta"] * 5, "stream_end"]
    assert frames[1]["messages"] == []
    assert "".join(f["text"] for f in frames if f["type"] == "stream_delta") == "你好 欢迎 光临"
    assert frames[-1]["message"]["role"] == "ai"
    prompt = model.calls[0]
    assert isinstance(prompt[0], SystemMessage)
    assert "중국어로 대화를 나눕시다" in prompt[0].content
    assert "스타벅스에서 커피를 주문하는 상황" in prompt[0].content and "초급" in prompt[0].content
    assert [(m.type, m.content) for m in prompt[1:]] == [("human", "첫 문장으로 대화를 시작해주세요.")]
    await communicator.disconnect()


async def test_user_turn_is_stored_in_order_and_history_reloads_into_the_prompt(user_a, use_model):
    model = use_model(fake_model("你好", "一杯 拿铁", "好的"))
    room = await LLMChatRoom.objects.acreate()
    communicator = await connect(room.conversation_id, user_a)
    await receive_until(communicator, "stream_end")

    await communicator.send_json_to({"type": "user_message", "text": "我要 咖啡"})
    frames = await receive_until(communicator, "stream_end")
    assert frames[0]["type"] == "message"
    assert frames[0]["message"]["role"] == "human" and frames[0]["message"]["text"] == "我要 咖啡"
    assert frames[-1]["message"]["text"] == "一杯 拿铁"
    await communicator.disconnect()

    rows = [row async for row in ConversationMessage.objects.filter(conversation=room.conversation_id).order_by("pk")]
    assert [(r.role, r.status, r.visible, r.user_id) for r in rows] == [
        ("human", "complete", False, user_a.pk),
        ("ai", "complete", True, user_a.pk),
        ("human", "complete", True, user_a.pk),
        ("ai", "complete", True, user_a.pk),
    ]
    assert [type(r.message) for r in rows] == [HumanMessage, AIMessage, HumanMessage, AIMessage]
    assert rows[2].turn_id == rows[3].turn_id != rows[0].turn_id

    # Reconnect: the page gets the visible history, and the next prompt carries all of it.
    communicator = await connect(room.conversation_id, user_a)
    welcome, history = await communicator.receive_json_from(), await communicator.receive_json_from()
    assert welcome["type"] == "welcome" and history["type"] == "history"
    assert [(m["role"], m["text"]) for m in history["messages"]] == [("ai", "你好"), ("human", "我要 咖啡"), ("ai", "一杯 拿铁")]
    await communicator.send_json_to({"type": "user_message", "text": "谢谢"})
    await receive_until(communicator, "stream_end")
    assert [(m.type, m.content) for m in model.calls[-1][1:]] == [
        ("human", "첫 문장으로 대화를 시작해주세요."),
        ("ai", "你好"),
        ("human", "我要 咖啡"),
        ("ai", "一杯 拿铁"),
        ("human", "谢谢"),
    ]
    await communicator.disconnect()


async def test_reconnecting_to_a_started_conversation_does_not_start_it_again(user_a, use_model):
    model = use_model(fake_model("你好", "不应该"))
    room = await LLMChatRoom.objects.acreate()
    communicator = await connect(room.conversation_id, user_a)
    await receive_until(communicator, "stream_end")
    await communicator.disconnect()

    communicator = await connect(room.conversation_id, user_a)
    await receive_until(communicator, "history")
    assert await communicator.receive_nothing(timeout=0.3)
    assert len(model.calls) == 1
    await communicator.disconnect()


async def test_the_tutorials_own_consumer_runs_unchanged(user_a, use_model):
    """tests/seed004.py is the tutorial's code verbatim: a room, its first turn, a user turn."""
    model = use_model(fake_model("你好", "好的"))
    room = await LLMChatRoom.objects.acreate()
    communicator = await connect(room.conversation_id, user_a, route="seed/chat")
    await receive_until(communicator, "stream_end")
    await communicator.send_json_to({"type": "user_message", "text": "一杯拿铁"})
    assert (await receive_until(communicator, "stream_end"))[-1]["message"]["text"] == "好的"
    await communicator.disconnect()
    assert "중국어로 대화를 나눕시다" in model.calls[0][0].content
    rows = [(row.role, row.visible) async for row in ConversationMessage.objects.filter(conversation=room.conversation_id)]
    assert rows == [("human", False), ("ai", True), ("human", True), ("ai", True)]


@pytest.mark.django_db
def test_the_tutorials_own_view_renders_the_chat_page(django_user_model):
    from django.test import RequestFactory

    from .seed004 import language_tutor_chat

    request = RequestFactory().get("/example/chat/7/")
    request.user = django_user_model.objects.create_user(username="reader", password="reader-pass-1")
    response = language_tutor_chat(request, room_pk=7)
    room = LLMChatRoom.objects.get(pk=7)
    assert response.status_code == 200
    assert f'data-ws-url="/ws/example/chat/{room.conversation.pk}/"' in response.content.decode()
