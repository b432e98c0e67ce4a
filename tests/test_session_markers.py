"""With a cache shared between processes, an open socket reads its session only when something
may have changed (pyhub_ai.sessions), and signing out still reaches it at its next frame.

The cache is a file-based one (shared between processes, like Redis): the signal receivers mark
the change in it, and a socket's next frame sees the mark. tests/test_sign_out.py checks the
same endings on a live daphne (with the Redis cache in the PostgreSQL + Redis run).
"""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, user_logged_out
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.models import Session
from django.test import RequestFactory
from django.utils import timezone

from pyhub_ai import sessions
from pyhub_ai.models import Conversation

from .routing import application
from .ws_client import signed_in_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def shared_cache(settings, tmp_path):
    settings.CACHES = {**settings.CACHES, "shared": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path)}}
    settings.PYHUB_AI_RATE_LIMIT_CACHE = "shared"
    assert sessions.shared_cache() is not None


async def open_socket(user):
    """A signed-in socket on the user's conversation, past ``welcome`` and ``history``."""
    session = await sync_to_async(signed_in_session)(user)
    conversation = await Conversation.objects.acreate(user=user)
    communicator = WebsocketCommunicator(application, f"/ws/plain/{conversation.pk}/")
    communicator.scope["user"], communicator.scope["session"] = user, session
    connected, _ = await communicator.connect()
    assert connected
    assert [(await communicator.receive_json_from(timeout=5))["type"] for _ in range(2)] == ["welcome", "history"]
    return communicator, session


async def still_answers(communicator) -> bool:
    """Send a ``load_history`` frame: ``True`` if it is answered, ``False`` if the socket is closed with 4401."""
    await communicator.send_json_to({"type": "load_history", "before": 1})
    output = await communicator.receive_output(timeout=5)
    if output["type"] == "websocket.close":
        assert output["code"] == 4401
        return False
    return True


async def test_a_deleted_session_closes_the_socket_at_its_next_frame(user_a):
    communicator, session = await open_socket(user_a)
    assert await still_answers(communicator)
    await sync_to_async(session.delete)()
    assert not await still_answers(communicator)


async def test_a_password_change_closes_the_socket_at_its_next_frame(user_a):
    communicator, _ = await open_socket(user_a)
    assert await still_answers(communicator)
    user_a.set_password("a new password")
    await user_a.asave()
    assert not await still_answers(communicator)


async def test_deactivation_closes_the_socket_at_its_next_frame(user_a):
    communicator, _ = await open_socket(user_a)
    assert await still_answers(communicator)
    user_a.is_active = False
    await user_a.asave()
    assert not await still_answers(communicator)


async def test_signing_out_with_any_session_engine_closes_the_socket(user_a):
    communicator, session = await open_socket(user_a)
    assert await still_answers(communicator)
    request = RequestFactory().get("/")
    request.session = session
    # What django.contrib.auth.logout() sends first; a cache-only session engine deletes no row.
    await sync_to_async(user_logged_out.send)(sender=type(user_a), request=request, user=user_a)
    await Session.objects.filter(session_key=session.session_key).aupdate(expire_date=timezone.now())
    assert not await still_answers(communicator)


async def test_between_marks_the_session_is_not_read_again_until_the_recheck_interval(user_a, monkeypatch):
    communicator, session = await open_socket(user_a)
    assert await still_answers(communicator)
    # An update that sends no signal: the socket goes on its last check ...
    await Session.objects.filter(session_key=session.session_key).aupdate(expire_date=timezone.now())
    assert await still_answers(communicator)
    # ... for at most RECHECK_AFTER seconds.
    monkeypatch.setattr(sessions, "RECHECK_AFTER", 0.0)
    assert not await still_answers(communicator)


class AsyncOnlyBackend(ModelBackend):
    """A backend whose ``aget_user()`` decides differently from its ``get_user()``."""

    refused = False

    async def aget_user(self, user_id):
        return None if AsyncOnlyBackend.refused else await super().aget_user(user_id)


async def test_a_backend_with_its_own_aget_user_decides_the_check(user_a, settings, monkeypatch):
    path = f"{__name__}.AsyncOnlyBackend"
    settings.AUTHENTICATION_BACKENDS = [path]
    communicator, session = await open_socket(user_a)
    session[BACKEND_SESSION_KEY] = path
    await sync_to_async(session.save)()
    monkeypatch.setattr(sessions, "RECHECK_AFTER", 0.0)  # every frame reads the session and the user
    assert await still_answers(communicator)
    monkeypatch.setattr(AsyncOnlyBackend, "refused", True)
    assert not await still_answers(communicator)
