"""Who may read and write which conversation: the full matrix, through real sessions.

Every visitor (anonymous without a cookie, anonymous with a session, users A and B, a staff
superuser) tries every conversation (A's, B's, an owner-less room, a number that does not
exist) through ``AuthMiddlewareStack`` with real session cookies, as a browser would. Each
thread is seeded with a message naming its owner, so what ``history`` shows says whose thread
the visitor reads; the visitor then sends a ``user_message`` and the stored rows say whose
thread it wrote to. The outcome of every cell is asserted in one table, so any change to the
access rules shows up here as a diff.

Staff and superusers get no special access to conversations over the websocket: the admin is
the place to read other people's conversations.
"""
from __future__ import annotations

import itertools
import json

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage

from example.consumers import LanguageTutorChatConsumer
from example.models import LLMChatRoom
from pyhub_ai.history import DjangoChatMessageHistory
from pyhub_ai.models import Conversation, ConversationMessage

from .routing import application
from .test_policies import signed_in_session

pytestmark = pytest.mark.django_db(transaction=True)

#: Route of the default consumer (``AgentChatConsumer`` with the default permission classes)
#: and of the seed-style consumer (``LanguageTutorChatConsumer``: ``can_accept()`` is ``True``).
DEFAULT_ROUTE = "/ws/plain/{pk}/"
SEED_ROUTE = "/ws/example/chat/{pk}/"

VISITORS = ["anonymous, no cookie", "anonymous, session", "user A", "user B", "staff"]
CONVERSATIONS = ["A's conversation", "B's conversation", "owner-less room", "no such conversation"]

REFUSED_4401 = "refused 4401"
REFUSED_4403 = "refused 4403"

EXPECTED_DEFAULT_CONSUMER = {
    ("anonymous, no cookie", "A's conversation"): REFUSED_4401,
    ("anonymous, no cookie", "B's conversation"): REFUSED_4401,
    ("anonymous, no cookie", "owner-less room"): REFUSED_4401,
    ("anonymous, no cookie", "no such conversation"): REFUSED_4401,
    ("anonymous, session", "A's conversation"): REFUSED_4401,
    ("anonymous, session", "B's conversation"): REFUSED_4401,
    ("anonymous, session", "owner-less room"): REFUSED_4401,
    ("anonymous, session", "no such conversation"): REFUSED_4401,
    ("user A", "A's conversation"): "reads A's thread; writes A's thread",
    ("user A", "B's conversation"): REFUSED_4403,
    ("user A", "owner-less room"): "reads A's thread; writes A's thread",
    ("user A", "no such conversation"): REFUSED_4403,
    ("user B", "A's conversation"): REFUSED_4403,
    ("user B", "B's conversation"): "reads B's thread; writes B's thread",
    ("user B", "owner-less room"): "reads B's thread; writes B's thread",
    ("user B", "no such conversation"): REFUSED_4403,
    ("staff", "A's conversation"): REFUSED_4403,
    ("staff", "B's conversation"): REFUSED_4403,
    ("staff", "owner-less room"): "reads staff's thread; writes staff's thread",
    ("staff", "no such conversation"): REFUSED_4403,
}

EXPECTED_SEED_CONSUMER = {
    ("anonymous, no cookie", "A's conversation"): REFUSED_4403,
    ("anonymous, no cookie", "B's conversation"): REFUSED_4403,
    # No session: a thread of its own for this connection only (it starts with the starter turn).
    ("anonymous, no cookie", "owner-less room"): "reads nothing; writes a new visitor thread",
    ("anonymous, no cookie", "no such conversation"): REFUSED_4403,
    ("anonymous, session", "A's conversation"): REFUSED_4403,
    ("anonymous, session", "B's conversation"): REFUSED_4403,
    ("anonymous, session", "owner-less room"): "reads anonymous session's thread; writes anonymous session's thread",
    ("anonymous, session", "no such conversation"): REFUSED_4403,
    ("user A", "A's conversation"): "reads A's thread; writes A's thread",
    ("user A", "B's conversation"): REFUSED_4403,
    ("user A", "owner-less room"): "reads A's thread; writes A's thread",
    ("user A", "no such conversation"): REFUSED_4403,
    ("user B", "A's conversation"): REFUSED_4403,
    ("user B", "B's conversation"): "reads B's thread; writes B's thread",
    ("user B", "owner-less room"): "reads B's thread; writes B's thread",
    ("user B", "no such conversation"): REFUSED_4403,
    ("staff", "A's conversation"): REFUSED_4403,
    ("staff", "B's conversation"): REFUSED_4403,
    ("staff", "owner-less room"): "reads staff's thread; writes staff's thread",
    ("staff", "no such conversation"): REFUSED_4403,
}


class World:
    """The users, their sessions, the conversations and the seeded threads of one test."""

    def __init__(self) -> None:
        self.cookies: dict[str, str | None] = {}
        self.conversation_pks: dict[str, int] = {}
        #: (user_id, visitor_key) of a thread -> its owner's name in the outcome table.
        self.thread_names: dict[tuple[int | None, str], str] = {}


async def build_world(django_user_model) -> World:
    world = World()
    user_a = await django_user_model.objects.acreate(username="alice")
    user_b = await django_user_model.objects.acreate(username="bob")
    staff = await django_user_model.objects.acreate(username="staff", is_staff=True, is_superuser=True)

    anonymous_session = SessionStore()
    await sync_to_async(anonymous_session.create)()
    world.cookies = {
        "anonymous, no cookie": None,
        "anonymous, session": anonymous_session.session_key,
        "user A": (await signed_in_session(user_a)).session_key,
        "user B": (await signed_in_session(user_b)).session_key,
        "staff": (await signed_in_session(staff)).session_key,
    }
    anonymous_key = visitor_key_of(anonymous_session)
    world.thread_names = {
        (user_a.pk, ""): "A's thread",
        (user_b.pk, ""): "B's thread",
        (staff.pk, ""): "staff's thread",
        (None, anonymous_key): "anonymous session's thread",
    }

    a_conversation = await Conversation.objects.acreate(user=user_a)
    b_conversation = await Conversation.objects.acreate(user=user_b)
    room = await LLMChatRoom.objects.acreate()
    world.conversation_pks = {
        "A's conversation": a_conversation.pk,
        "B's conversation": b_conversation.pk,
        "owner-less room": room.conversation_id,
        "no such conversation": 999_999,
    }
    # Each thread gets a message that names it.
    await seed(a_conversation, user=user_a)
    await seed(b_conversation, user=user_b)
    for user in (user_a, user_b, staff):
        await seed(room.conversation, user=user)
    await seed(room.conversation, visitor_key=anonymous_key)
    return world


def visitor_key_of(session: SessionStore) -> str:
    """The key of an anonymous visitor's thread, as the consumer computes it."""
    consumer = LanguageTutorChatConsumer()
    consumer.scope = {"session": session, "user": AnonymousUser()}
    return consumer.get_visitor_key()


async def seed(conversation: Conversation, *, user=None, visitor_key: str = "") -> None:
    history = DjangoChatMessageHistory(conversation=conversation, user=user, visitor_key=visitor_key)
    owner = user.username if user is not None else f"visitor {visitor_key[:8]}"
    await history.aadd_messages([HumanMessage(content=f"seed by {owner}"), AIMessage(content=f"seed reply to {owner}")])


def thread_of(world: World, row: ConversationMessage) -> str:
    return world.thread_names.get((row.user_id, row.visitor_key), "a new visitor thread")


async def rows_snapshot() -> set[int]:
    return {pk async for pk in ConversationMessage.objects.values_list("pk", flat=True)}


async def receive_until(communicator: WebsocketCommunicator, frame_type: str) -> list[dict]:
    frames = []
    while True:
        frames.append(await communicator.receive_json_from(timeout=3))
        if frames[-1]["type"] == frame_type:
            return frames


async def try_cell(world: World, route: str, visitor: str, conversation: str) -> str:
    """Connect, read the history, write one message; describe what happened."""
    headers = []
    if world.cookies[visitor] is not None:
        headers.append((b"cookie", f"sessionid={world.cookies[visitor]}".encode()))
    communicator = WebsocketCommunicator(
        AuthMiddlewareStack(application), route.format(pk=world.conversation_pks[conversation]), headers=headers
    )
    connected, _ = await communicator.connect()
    assert connected  # the handshake is accepted first, so that a refusal carries its code
    before = await rows_snapshot()
    first = await communicator.receive_output(timeout=3)
    if first["type"] == "websocket.close":
        # A refused visitor is sent nothing but the close; what it sends is never read.
        await communicator.send_json_to({"type": "user_message", "text": f"{visitor} tries to write"})
        assert await communicator.receive_nothing(timeout=0.1)
        await communicator.disconnect()
        assert await rows_snapshot() == before, f"{visitor} / {conversation}: a refused visitor stored rows"
        return f"refused {first['code']}"

    welcome = json.loads(first["text"])
    assert welcome["type"] == "welcome"
    history = await communicator.receive_json_from(timeout=3)
    assert history["type"] == "history"
    seen_threads = set()
    for message in history["messages"]:
        row = await ConversationMessage.objects.aget(pk=message["id"])
        assert row.conversation_id == world.conversation_pks[conversation]
        seen_threads.add(thread_of(world, row))
    if not history["messages"] and not await communicator.receive_nothing(timeout=0.3):
        await receive_until(communicator, "stream_end")  # an empty thread starts with the starter turn

    before = await rows_snapshot()
    await communicator.send_json_to({"type": "user_message", "text": f"{visitor} writes"})
    await receive_until(communicator, "stream_end")
    await communicator.disconnect()
    new_rows = [row async for row in ConversationMessage.objects.exclude(pk__in=before).order_by("pk")]
    assert [(row.role, row.status) for row in new_rows] == [("human", "complete"), ("ai", "complete")]
    assert {row.conversation_id for row in new_rows} == {world.conversation_pks[conversation]}
    written = {thread_of(world, row) for row in new_rows}
    assert len(written) == 1
    reads = ", ".join(sorted(seen_threads)) or "nothing"
    return f"reads {reads}; writes {written.pop()}"


@pytest.fixture
def any_reply(use_model):
    """Every turn of every consumer is answered by a fake model (it never runs out)."""
    use_model(GenericFakeChatModel(messages=itertools.repeat(AIMessage(content="noted"))))


async def outcome_table(world: World, route: str) -> dict[tuple[str, str], str]:
    return {
        (visitor, conversation): await try_cell(world, route, visitor, conversation)
        for visitor in VISITORS
        for conversation in CONVERSATIONS
    }


async def test_default_consumer_admits_signed_in_users_to_their_own_threads_only(django_user_model, any_reply):
    world = await build_world(django_user_model)
    assert await outcome_table(world, DEFAULT_ROUTE) == EXPECTED_DEFAULT_CONSUMER


async def test_seed_style_consumer_admits_anonymous_visitors_to_owner_less_rooms_only(django_user_model, any_reply):
    world = await build_world(django_user_model)
    assert await outcome_table(world, SEED_ROUTE) == EXPECTED_SEED_CONSUMER


async def test_an_anonymous_visitor_keeps_their_thread_across_connections_of_the_same_session(django_user_model, any_reply):
    world = await build_world(django_user_model)
    cookie = [(b"cookie", f"sessionid={world.cookies['anonymous, session']}".encode())]
    path = SEED_ROUTE.format(pk=world.conversation_pks["owner-less room"])
    texts = []
    for _ in range(2):
        communicator = WebsocketCommunicator(AuthMiddlewareStack(application), path, headers=cookie)
        await communicator.connect()
        history = (await receive_until(communicator, "history"))[-1]
        texts.append([m["text"] for m in history["messages"]])
        await communicator.send_json_to({"type": "user_message", "text": f"visit {len(texts)}"})
        await receive_until(communicator, "stream_end")
        await communicator.disconnect()
    assert texts[0][:1] == [f"seed by visitor {visitor_key_of(await session_of(world))[:8]}"]
    assert texts[1][-2:] == ["visit 1", "noted"]
    # The raw session key is never stored: threads are keyed by its hash.
    session_key = world.cookies["anonymous, session"]
    assert not await ConversationMessage.objects.filter(visitor_key=session_key).aexists()


async def session_of(world: World) -> SessionStore:
    return SessionStore(session_key=world.cookies["anonymous, session"])
