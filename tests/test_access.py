"""Who may connect to which conversation, and whose messages they see."""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore

from example.models import LLMChatRoom
from pyhub_ai.models import Conversation, ConversationMessage

from .conftest import fake_model
from .routing import application
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


async def close_code(conversation_pk, user, route="plain") -> int:
    """Connect and return the close code the server answers with (fails if it sends data)."""
    communicator = WebsocketCommunicator(application, f"/ws/{route}/{conversation_pk}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    output = await communicator.receive_output(timeout=2)
    assert output["type"] == "websocket.close", output
    await communicator.wait()
    return output["code"]


async def test_anonymous_visitors_are_refused_by_default_with_4401(user_a):
    conversation = await Conversation.objects.acreate()
    assert await close_code(conversation.pk, AnonymousUser()) == 4401


async def test_another_users_conversation_is_refused_with_4403(user_a, user_b):
    conversation = await Conversation.objects.acreate(user=user_a)
    assert await close_code(conversation.pk, user_b) == 4403


async def test_a_conversation_that_does_not_exist_is_refused_with_the_same_4403(user_a):
    assert await close_code(999_999, user_a) == 4403


async def test_the_owner_is_accepted_into_their_conversation(user_a, use_model):
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    welcome = await communicator.receive_json_from()
    assert welcome == {"type": "welcome", "protocol": 1, "conversation": str(conversation.pk), "max_message_length": 32000}
    await communicator.disconnect()


async def test_refused_visitors_store_nothing_even_if_they_send_frames(user_a, user_b):
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = WebsocketCommunicator(application, f"/ws/plain/{conversation.pk}/")
    communicator.scope["user"] = user_b
    await communicator.connect()
    await communicator.send_json_to({"type": "user_message", "text": "let me in"})
    assert (await communicator.receive_output())["type"] == "websocket.close"
    await communicator.wait()
    assert await ConversationMessage.objects.acount() == 0


async def test_two_users_in_an_owner_less_room_each_see_only_their_own_thread(user_a, user_b, use_model):
    use_model(fake_model("hi alice", "hi bob", "bob's answer"))
    room = await LLMChatRoom.objects.acreate()

    alice = await connect(room.conversation_id, user_a)
    await receive_until(alice, "stream_end")
    await alice.disconnect()

    bob = await connect(room.conversation_id, user_b)
    frames = await receive_until(bob, "stream_end")
    assert frames[1] == {"type": "history", "messages": [], "has_more": False, "before": None}
    await bob.send_json_to({"type": "user_message", "text": "I am bob"})
    await receive_until(bob, "stream_end")
    await bob.disconnect()

    alice = await connect(room.conversation_id, user_a)
    history = (await receive_until(alice, "history"))[-1]
    assert [m["text"] for m in history["messages"]] == ["hi alice"]
    assert await alice.receive_nothing(timeout=0.2)
    await alice.disconnect()


async def anonymous_visitor(conversation_pk) -> WebsocketCommunicator:
    """A visitor with their own session cookie, through the real session/auth middleware."""
    session = SessionStore()
    await sync_to_async(session.create)()
    communicator = WebsocketCommunicator(
        AuthMiddlewareStack(application),
        f"/ws/example/chat/{conversation_pk}/",
        headers=[(b"cookie", f"sessionid={session.session_key}".encode())],
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def test_anonymous_visitors_let_in_by_can_accept_are_kept_apart_by_their_session(use_model):
    use_model(fake_model("hello first visitor", "hello second visitor", "only for the second"))
    room = await LLMChatRoom.objects.acreate()
    first, second = await anonymous_visitor(room.conversation_id), await anonymous_visitor(room.conversation_id)

    await receive_until(first, "stream_end")
    await receive_until(second, "stream_end")
    await second.send_json_to({"type": "user_message", "text": "second visitor here"})
    await receive_until(second, "stream_end")
    await first.disconnect()
    await second.disconnect()

    rows = [row async for row in ConversationMessage.objects.filter(conversation=room.conversation_id)]
    keys = {row.visitor_key for row in rows}
    assert len(keys) == 2 and "" not in keys
    assert all(row.user_id is None for row in rows)
    assert sorted(sum(1 for row in rows if row.visitor_key == key) for key in keys) == [2, 4]


@pytest.mark.parametrize("number", ["9223372036854775807", "9223372036854775808", str(10**30)])
@pytest.mark.parametrize("route", ["plain", "example/chat", "example/data"])
async def test_a_conversation_number_out_of_range_is_refused_like_a_missing_one(user_a, route, number):
    assert await close_code(number, user_a, route=route) == 4403
