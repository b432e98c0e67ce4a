"""The websocket route of the ready-made chat pages (``pyhub_ai.urls``).

In ``asgi.py``: ``URLRouter(pyhub_ai.routing.websocket_urlpatterns)`` (or add them to your own
list). The route serves the consumer named by ``PYHUB_AI_CHAT_CONSUMER`` (default
``pyhub_ai.consumers.ChatConsumer``), looked up when a connection arrives, so the setting can
change without touching the routing. A project with its own consumer and routing (the
django-pyhub-ai tutorial's way) does not need this module.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.urls import path, re_path
from django.utils.module_loading import import_string

from . import converters  # noqa: F401  (registers <pk:...>)
from .conf import conf

#: The websocket path of a conversation, without the leading slash (``pyhub_ai.views`` builds
#: the page's ``ws_url`` from it).
WEBSOCKET_PATH = "ws/pyhub_ai/chat/<pk:conversation_pk>/"


def websocket_url(conversation_pk: int) -> str:
    """The websocket URL of a conversation's chat, as the chat page's ``ws_url``."""
    return "/" + WEBSOCKET_PATH.replace("<pk:conversation_pk>", str(int(conversation_pk)))


@lru_cache(maxsize=8)
def _consumer_application(dotted_path: str) -> Any:
    return import_string(dotted_path).as_asgi()


async def chat_consumer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI application of ``PYHUB_AI_CHAT_CONSUMER`` (built once per consumer class)."""
    await _consumer_application(conf.CHAT_CONSUMER)(scope, receive, send)


websocket_urlpatterns = [path(WEBSOCKET_PATH, chat_consumer, name="pyhub_ai_chat")]


async def websocket_not_found(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuse a websocket whose path no route matched: the handshake gets HTTP 403.

    Without it channels' ``URLRouter`` raises ``ValueError("No route found ...")``: the client
    gets HTTP 500 and the log a traceback, for any path a visitor makes up (or an id out of
    range, which ``<pk:...>`` does not match).
    """
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 4404})


#: The last route of a project's websocket routes: ``URLRouter([*your_routes,
#: *pyhub_ai.routing.websocket_urlpatterns, *pyhub_ai.routing.not_found_urlpatterns])``.
not_found_urlpatterns = [re_path(r"", websocket_not_found)]
