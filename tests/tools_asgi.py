"""The demo's ASGI application plus websocket routes whose consumers have tools (browser tests).

``/ws/tools/<conversation_pk>/``: an ``AgentChatConsumer`` on the offline model, which calls the
``sales_table`` tool when a message names it ("the sales table") and then reports its answer.

``/ws/approval/<conversation_pk>/``: a ``create_agent`` graph whose ``get_weather`` tool needs
the user's approval (``HumanInTheLoopMiddleware``); its model asks for the tool, then reports
what the tool said. The model decides from the messages alone, so it answers the same way in a
restarted server.
"""
from __future__ import annotations

from typing import Any

from mysite.asgi import django_asgi_app  # noqa: I001  (sets up Django first)

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
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


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class WeatherModel(BaseChatModel):
    """Calls ``get_weather`` for Seoul; after the tool answered (or was rejected), says what it said."""

    @property
    def _llm_type(self) -> str:
        return "weather-test-model"

    def bind_tools(self, tools: Any, **kwargs: Any) -> WeatherModel:
        return self

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            reply = AIMessage(content=f"The weather tool said: {last.content}")
        else:
            reply = AIMessage(content="", tool_calls=[{"name": "get_weather", "args": {"city": "Seoul"}, "id": f"call_weather_{len(messages)}"}])
        return ChatResult(generations=[ChatGeneration(message=reply)])


class ApprovalChatConsumer(AgentChatConsumer):
    llm_model = "offline:demo"
    graph = create_agent(
        WeatherModel(),
        [get_weather],
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"get_weather": {"allowed_decisions": ["approve", "edit", "reject"]}})],
    )


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(
            URLRouter([
                path("ws/tools/<int:conversation_pk>/", ToolChatConsumer.as_asgi()),
                path("ws/approval/<int:conversation_pk>/", ApprovalChatConsumer.as_asgi()),
                *websocket_urlpatterns,
            ])
        ),
    }
)
