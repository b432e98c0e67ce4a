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

from django.urls import path
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
