"""The demo's ASGI application plus a websocket route whose consumer has a tool (browser tests).

``/ws/tools/<conversation_pk>/``: an ``AgentChatConsumer`` on the offline model, which calls the
``sales_table`` tool when a message names it ("the sales table") and then reports its answer.
"""
from __future__ import annotations

from typing import Any

from mysite.asgi import django_asgi_app  # noqa: I001  (sets up Django first)

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path
from langchain_core.tools import tool

from example.routing import websocket_urlpatterns
from pyhub_ai.consumers import AgentChatConsumer


@tool(response_format="content_and_artifact")
def sales_table() -> tuple[str, dict[str, Any]]:
    """The sales of the last months, as a table."""
    rows = [["January", 120], ["February", 95], ["<b>March</b>", 143]]
    return "Sales of 3 months.", {"type": "table", "columns": ["month", "sales"], "rows": rows, "total_rows": 12}


class ToolChatConsumer(AgentChatConsumer):
    llm_model = "offline:demo"
    tools = [sales_table]


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(
            URLRouter([path("ws/tools/<int:conversation_pk>/", ToolChatConsumer.as_asgi()), *websocket_urlpatterns])
        ),
    }
)
