"""Websocket routes for the tests: the tutorial consumer, pyhub_ai's ready-made chat, and a plain
consumer with no starter message."""
from channels.routing import URLRouter
from django.urls import path

import pyhub_ai.routing
from example.routing import websocket_urlpatterns
from pyhub_ai.consumers import AgentChatConsumer

from . import seed004


class PlainChatConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"


application = URLRouter(
    [
        *websocket_urlpatterns,
        *pyhub_ai.routing.websocket_urlpatterns,
        path("ws/plain/<int:conversation_pk>/", PlainChatConsumer.as_asgi()),
        path("ws/seed/chat/<int:conversation_pk>/", seed004.LanguageTutorChatConsumer.as_asgi()),
    ]
)
