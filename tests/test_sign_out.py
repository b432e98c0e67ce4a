"""Signing out reaches every open socket, whatever the consumer's ``can_accept()`` says.

A real daphne serves the demo; a real websocket client opens the tutorial room (seed 004's
consumer: ``can_accept()`` returns ``True``) and the data room (default permissions) with a
signed-in session. Then the session ends on the server (signed out elsewhere, or an admin ended
it; a password change does the same): the socket must stop acting as that user.
"""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from example.models import LLMChatRoom
from pyhub_ai.models import Conversation, ConversationMessage
from tests.live_server import run_daphne
from tests.ws_client import Client, signed_in_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(request, transactional_db):
    with run_daphne(f"daphne-{request.node.name}") as (base_url, log_path):
        yield base_url
    print(f"---- daphne output ({log_path}) ----\n{log_path.read_text(errors='replace')[-5000:]}")


async def open_room(server: str, path: str, cookie: str) -> Client:
    client = await Client.connect(server, path, cookie)
    assert (await client.recv())["type"] == "welcome"
    assert (await client.recv())["type"] == "history"
    return client


async def thread_rows(user) -> int:
    return await ConversationMessage.objects.filter(user=user).acount()


@pytest.mark.parametrize("room", ["tutorial room (can_accept returns True)", "data room (default permissions)"])
async def test_a_socket_stops_acting_as_a_user_whose_session_was_deleted(server, user_a, room):
    if room.startswith("tutorial"):
        conversation = (await sync_to_async(LLMChatRoom.objects.create)()).conversation
        path = f"/ws/example/chat/{conversation.pk}/"
    else:
        conversation = await Conversation.objects.acreate(user=user_a)
        path = f"/ws/example/data/{conversation.pk}/"
    session = await sync_to_async(signed_in_session)(user_a)
    client = await open_room(server, path, f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
    if room.startswith("tutorial"):
        await client.until("stream_end")  # the room's starter turn, as that user
    stored = await thread_rows(user_a)

    await sync_to_async(session.delete)()  # what signing out (or an admin ending the session) does
    await client.send_message("Still me?")

    assert await client.close_code() == 4401
    assert await thread_rows(user_a) == stored
    assert not await ConversationMessage.objects.filter(visitor_key__gt="").aexists()


async def open_tutorial_room(server: str, user) -> Client:
    """A new tutorial room, opened by ``user`` once its starter turn has been answered."""
    conversation = (await sync_to_async(LLMChatRoom.objects.create)()).conversation
    session = await sync_to_async(signed_in_session)(user)
    client = await open_room(server, f"/ws/example/chat/{conversation.pk}/", f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
    await client.until("stream_end")
    return client


async def test_a_socket_stops_acting_as_a_user_whose_password_changed(server, user_a):
    client = await open_tutorial_room(server, user_a)
    stored = await thread_rows(user_a)

    user_a.set_password("a-new-password-456")  # other sessions of the user end with it
    await user_a.asave()
    await client.send_message("Still me?")

    assert await client.close_code() == 4401
    assert await thread_rows(user_a) == stored


async def test_a_deactivated_users_socket_is_closed(server, user_a):
    client = await open_tutorial_room(server, user_a)
    stored = await thread_rows(user_a)

    user_a.is_active = False
    await user_a.asave()
    await client.send_json({"type": "load_history", "before": 1})

    assert await client.close_code() == 4401
    assert await thread_rows(user_a) == stored


async def test_an_idle_tab_of_a_signed_out_session_does_not_receive_the_users_next_turns(server, user_a):
    """Signed in twice (two browsers); signing out of the first must end its idle tab before it
    sees what the user writes in the second."""
    conversation = (await sync_to_async(LLMChatRoom.objects.create)()).conversation
    path = f"/ws/example/chat/{conversation.pk}/"
    first_session = await sync_to_async(signed_in_session)(user_a)
    second_session = await sync_to_async(signed_in_session)(user_a)
    idle = await open_room(server, path, f"{settings.SESSION_COOKIE_NAME}={first_session.session_key}")
    await idle.until("stream_end")
    active = await open_room(server, path, f"{settings.SESSION_COOKIE_NAME}={second_session.session_key}")

    await sync_to_async(first_session.delete)()
    await active.send_message("A secret for my eyes only")
    await active.until("stream_end")

    frames = []
    code = None
    try:
        while True:
            frames.append(await idle.recv(timeout=5))
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
    assert code == 4401
    assert "A secret for my eyes only" not in str(frames)
    await active.close()
