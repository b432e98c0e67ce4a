"""No websocket URL a visitor can open is a server error.

A real daphne serves the demo; a real websocket client opens paths that no route matches (an
unknown path, an id that is not a number, an id out of the database's range for a ``<pk:...>``
route) and paths whose route matches but whose conversation does not exist. The first are
refused at the handshake (HTTP 403), the second with close code 4403: never an HTTP 500, and
never an exception in the server's log.
"""
from __future__ import annotations

import random
import string

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.live_server import run_daphne

pytestmark = pytest.mark.django_db(transaction=True)

NO_ROUTE = [
    "/ws/",
    "/ws/nope/",
    "/ws/example/chat/abc/",
    "/ws/example/chat/-1/",
    "/ws/pyhub_ai/chat/0/",
    "/ws/pyhub_ai/chat/9223372036854775808/",
    "/ws/pyhub_ai/chat/" + "9" * 40 + "/",
    "/nothing",
]
#: An anonymous visitor is let into the tutorial room's consumer (``can_accept()`` returns ``True``),
#: then finds no such conversation; the other two consumers want a signed-in user first.
NO_CONVERSATION = {
    "/ws/example/chat/9223372036854775807/": "close 4403",
    "/ws/example/chat/99999999999999999999999999/": "close 4403",
    "/ws/example/data/99999999999999999999999999/": "close 4401",
    "/ws/pyhub_ai/chat/9223372036854775807/": "close 4401",
}


def random_paths(count: int = 30) -> list[str]:
    chooser = random.Random(20261129)
    alphabet = string.ascii_letters + string.digits + "-_.~%/"
    return ["/ws/" + "".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 40))) for _ in range(count)]


async def handshake(base_url: str, path: str) -> str:
    """``"HTTP <status>"`` if the handshake is refused, ``"close <code>"`` if the socket opens and is closed."""
    try:
        ws = await connect("ws" + base_url.removeprefix("http") + path, origin=base_url, proxy=None, open_timeout=5)
    except InvalidStatus as refused:
        return f"HTTP {refused.response.status_code}"
    try:
        await ws.recv()
    except ConnectionClosed as closed:
        return f"close {closed.rcvd.code if closed.rcvd else 1006}"
    await ws.close()
    return "open"


async def test_websocket_paths_without_a_route_or_a_conversation_are_refused_without_a_server_error(request):
    with run_daphne(f"daphne-{request.node.name}") as (base_url, log_path):
        outcomes = {path: await handshake(base_url, path) for path in [*NO_ROUTE, *random_paths(), *NO_CONVERSATION]}
    log = log_path.read_text(errors="replace")
    assert {path: outcomes.pop(path) for path in NO_CONVERSATION} == NO_CONVERSATION
    assert {path: outcome for path, outcome in outcomes.items() if outcome != "HTTP 403"} == {}
    assert "Exception inside application" not in log
