"""A real websocket client for the tests that talk to daphne children (``tests.live_server``).

``Client`` is one browser tab (the ``websockets`` package, bounded waits); ``signed_in_cookie``
stores a signed-in session of a user as the login view would and returns its ``Cookie`` header.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.live_server import LiveServer

#: Longest wait for one frame, or for a connection to open or drop.
FRAME_TIMEOUT = 10.0


def signed_in_session(user: Any):
    """A stored session in which ``user`` is signed in (what the login view stores)."""
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session


def signed_in_cookie(user: Any) -> str:
    """A ``Cookie`` header of a new signed-in session of ``user``."""
    return f"{settings.SESSION_COOKIE_NAME}={signed_in_session(user).session_key}"


asigned_in_cookie = sync_to_async(signed_in_cookie)


class Client:
    """One tab: a websocket to one server, reading JSON frames with bounded waits."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name

    @classmethod
    async def connect(cls, server: LiveServer | str, path: str, cookie: str = "", name: str = "tab") -> Client:
        """Open ``path`` on ``server`` (a ``LiveServer`` or a base URL) with the page's origin."""
        base = server if isinstance(server, str) else server.url
        ws = await connect(
            "ws" + base.removeprefix("http") + path,
            origin=base,  # AllowedHostsOriginValidator: 127.0.0.1 is in ALLOWED_HOSTS
            additional_headers={"Cookie": cookie} if cookie else None,
            proxy=None,
            open_timeout=FRAME_TIMEOUT,
            close_timeout=2,
        )
        return cls(ws, name)

    @classmethod
    async def open(cls, server: LiveServer, conversation_pk: int, cookie: str, name: str) -> tuple[Client, list[dict]]:
        """Connect to the tutorial room's conversation; return the client and its history page
        (after checking ``welcome``)."""
        client = await cls.connect(server, f"/ws/example/chat/{conversation_pk}/", cookie, name)
        welcome = await client.recv()
        assert welcome["type"] == "welcome", welcome
        assert welcome["conversation"] == str(conversation_pk)
        history = await client.recv()
        assert history["type"] == "history", history
        return client, history["messages"]

    async def recv(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name}: no frame within {timeout} s") from None
        return json.loads(raw)

    async def until(self, frame_type: str, timeout: float = FRAME_TIMEOUT) -> list[dict[str, Any]]:
        """The frames received up to and including the first one of ``frame_type``."""
        frames = []
        while True:
            frames.append(await self.recv(timeout))
            if frames[-1]["type"] == frame_type:
                return frames
            assert frames[-1]["type"] != "error", f"{self.name}: {frames[-1]}"

    async def until_end_of_turn(self, timeout: float = FRAME_TIMEOUT) -> list[dict[str, Any]]:
        """The frames received up to and including the turn's last one: ``stream_end`` or ``error``."""
        frames = []
        while True:
            frames.append(await self.recv(timeout))
            if frames[-1]["type"] in ("stream_end", "error"):
                return frames

    async def close_code(self, timeout: float = FRAME_TIMEOUT) -> int:
        """Read (and drop) frames until the server closes the connection; its close code."""
        try:
            while True:
                await self.recv(timeout)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else 1006

    async def send_json(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_message(self, text: str) -> None:
        await self.send_json({"type": "user_message", "text": text, "idempotency_key": uuid.uuid4().hex})

    async def close(self) -> None:
        await self.ws.close()
