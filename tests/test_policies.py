"""Access policies checked at connect and on every frame, floods, oversized frames and the turn rate limit."""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.urls import path

from pyhub_ai import checks
from pyhub_ai.consumers import AgentChatConsumer
from pyhub_ai.models import Conversation, ConversationMessage
from pyhub_ai.permissions import AllowAny, BasePermission
from pyhub_ai.ratelimit import parse_rate

from .conftest import fake_model
from .routing import application
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


class StaffOnly(BasePermission):
    async def has_permission(self, consumer):
        return consumer.get_user().is_staff


class StaffChatConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"
    permission_classes = [StaffOnly, AllowAny]


staff_application = AuthMiddlewareStack(
    __import__("channels.routing", fromlist=["URLRouter"]).URLRouter(
        [path("ws/staff/<int:conversation_pk>/", StaffChatConsumer.as_asgi())]
    )
)


async def next_close(communicator) -> int:
    while True:
        output = await communicator.receive_output(timeout=2)
        if output["type"] == "websocket.close":
            return output["code"]


async def test_permission_classes_decide_who_may_connect(user_a, django_user_model, use_model):
    use_model(fake_model("hello staff"))
    staff = await django_user_model.objects.acreate(username="staff", is_staff=True)
    conversation = await Conversation.objects.acreate()
    for user, expected in ((user_a, "refused"), (staff, "accepted")):
        communicator = WebsocketCommunicator(staff_application, f"/ws/staff/{conversation.pk}/")
        communicator.scope["user"] = user
        await communicator.connect()
        first = await communicator.receive_output(timeout=2)
        outcome = "refused" if first["type"] == "websocket.close" else "accepted"
        assert outcome == expected
        if outcome == "refused":
            assert first["code"] == 4403
        await communicator.disconnect()


LOST_ACCESS_FRAMES = {
    "a message (checked in the turn's first database call)": {"type": "user_message", "text": "still mine?"},
    "a history request": {"type": "load_history", "before": 10},
    "a frame of no known type": {"type": "dance"},
    "an empty message (an error frame, were access not lost)": {"type": "user_message", "text": ""},
    "text that is not JSON (an error frame, were access not lost)": "{not json",
}


@pytest.mark.parametrize("frame", LOST_ACCESS_FRAMES.values(), ids=LOST_ACCESS_FRAMES.keys())
@pytest.mark.parametrize("loss", ["given away", "deleted"])
async def test_a_conversation_given_away_or_deleted_closes_the_socket_at_the_next_frame_before_it_is_answered(user_a, user_b, use_model, frame, loss):
    use_model(fake_model("never"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    if loss == "deleted":
        await Conversation.objects.filter(pk=conversation.pk).adelete()
    else:
        await Conversation.objects.filter(pk=conversation.pk).aupdate(user=user_b)

    if isinstance(frame, str):
        await communicator.send_to(text_data=frame)
    else:
        await communicator.send_json_to(frame)

    assert await next_close(communicator) == 4403  # no error frame, no history, no turn first
    assert await ConversationMessage.objects.acount() == 0


class OwnConversationCheckConsumer(AgentChatConsumer):
    """Overrides ``can_access_conversation``: its own check runs for every frame, as before."""

    llm_model = "openai:gpt-4o-mini"
    checked = 0

    async def can_access_conversation(self, conversation):
        type(self).checked += 1
        return await super().can_access_conversation(conversation)


class TitleIsOpen(BasePermission):
    async def has_conversation_permission(self, consumer, conversation):
        return conversation.title == "open"


class OwnPolicyConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"
    permission_classes = [AllowAny, TitleIsOpen]


async def test_the_conversation_check_moves_into_the_turn_only_for_the_librarys_own_hooks(user_a, use_model):
    from .routing import PlainChatConsumer
    from .seed004 import LanguageTutorChatConsumer

    use_model(fake_model("hello"))
    scope = {"type": "websocket", "user": user_a, "url_route": {"kwargs": {"conversation_pk": 1}}}
    assert PlainChatConsumer(scope=scope).can_check_conversation_in_turn()
    assert LanguageTutorChatConsumer(scope=scope).can_check_conversation_in_turn()  # seed 004's can_accept does not matter
    assert StaffChatConsumer(scope=scope).can_check_conversation_in_turn()  # its own has_permission runs in can_accept
    assert not OwnConversationCheckConsumer(scope=scope).can_check_conversation_in_turn()
    assert not OwnPolicyConsumer(scope=scope).can_check_conversation_in_turn()

    own = __import__("channels.routing", fromlist=["URLRouter"]).URLRouter(
        [path("ws/own/<int:conversation_pk>/", OwnConversationCheckConsumer.as_asgi())]
    )
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = WebsocketCommunicator(own, f"/ws/own/{conversation.pk}/")
    communicator.scope["user"] = user_a
    await communicator.connect()
    await receive_until(communicator, "history")
    before = OwnConversationCheckConsumer.checked
    await communicator.send_json_to({"type": "user_message", "text": "hi"})
    await receive_until(communicator, "stream_end")
    assert OwnConversationCheckConsumer.checked == before + 1
    await communicator.disconnect()


async def signed_in_session(user) -> SessionStore:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    await sync_to_async(session.save)()
    return session


async def test_signing_out_elsewhere_closes_the_chat_on_the_next_frame(user_a, use_model):
    use_model(fake_model("never"))
    conversation = await Conversation.objects.acreate(user=user_a)
    session = await signed_in_session(user_a)
    communicator = WebsocketCommunicator(
        AuthMiddlewareStack(application),
        f"/ws/plain/{conversation.pk}/",
        headers=[(b"cookie", f"sessionid={session.session_key}".encode())],
    )
    await communicator.connect()
    await receive_until(communicator, "history")

    await sync_to_async(session.delete)()  # what logout does to the session
    await communicator.send_json_to({"type": "user_message", "text": "hello?"})

    assert await next_close(communicator) == 4401
    assert await ConversationMessage.objects.acount() == 0


async def test_a_flood_of_frames_closes_the_connection_with_4429(user_a, use_model, settings):
    settings.PYHUB_AI_FRAME_FLOOD_LIMIT = 5
    use_model(fake_model("unused"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    for _ in range(6):
        await communicator.send_to(text_data="not json")
    frames = [await communicator.receive_json_from() for _ in range(6)]
    assert [f["code"] for f in frames] == ["invalid_frame"] * 5 + ["too_many_frames"]
    assert await next_close(communicator) == 4429


async def test_an_oversized_frame_is_refused_before_it_is_decoded(user_a, use_model, settings):
    settings.PYHUB_AI_MAX_MESSAGE_LENGTH = 10
    use_model(fake_model("still fine"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_to(text_data="[" * 10_000)
    assert (await communicator.receive_json_from())["code"] == "message_too_long"
    await communicator.send_json_to({"type": "user_message", "text": "short"})
    assert (await receive_until(communicator, "stream_end"))[-1]["message"]["text"] == "still fine"
    await communicator.disconnect()


async def test_turns_beyond_the_rate_limit_get_an_error_and_store_nothing(user_a, use_model, settings):
    settings.PYHUB_AI_RATE_LIMIT = "2/m"
    await cache.aclear()
    use_model(fake_model("one", "two", "three"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    for text in ("first", "second"):
        await communicator.send_json_to({"type": "user_message", "text": text})
        await receive_until(communicator, "stream_end")

    await communicator.send_json_to({"type": "user_message", "text": "third"})

    error = await communicator.receive_json_from()
    assert error["code"] == "rate_limited"
    assert await ConversationMessage.objects.acount() == 4
    await communicator.disconnect()


def test_rates_are_parsed_and_bad_ones_are_refused_by_check_e005(settings):
    assert parse_rate("30/m") == (30, 60) and parse_rate("5 / hour") == (5, 3600)
    settings.PYHUB_AI_RATE_LIMIT = "lots"
    assert [e.id for e in checks.check_rate_limit()] == ["pyhub_ai.E005"]
    settings.PYHUB_AI_RATE_LIMIT = "10/m"
    settings.PYHUB_AI_RATE_LIMIT_CACHE = "nope"
    assert [e.id for e in checks.check_rate_limit()] == ["pyhub_ai.E005"]
    settings.PYHUB_AI_RATE_LIMIT = None
    assert checks.check_rate_limit() == []


def test_a_bad_site_wide_ceiling_is_refused_by_check_e005(settings):
    settings.PYHUB_AI_RATE_LIMIT = None
    settings.PYHUB_AI_GLOBAL_RATE_LIMIT = "plenty"
    errors = checks.check_rate_limit()
    assert [e.id for e in errors] == ["pyhub_ai.E005"] and "PYHUB_AI_GLOBAL_RATE_LIMIT" in errors[0].msg
    settings.PYHUB_AI_GLOBAL_RATE_LIMIT = "600/m"
    settings.PYHUB_AI_RATE_LIMIT_CACHE = "nope"
    assert [e.id for e in checks.check_rate_limit()] == ["pyhub_ai.E005"]
    settings.PYHUB_AI_GLOBAL_RATE_LIMIT = None
    assert checks.check_rate_limit() == []
