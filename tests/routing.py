"""Websocket routes for the tests: the tutorial consumer, and a plain one with no starter message."""
from channels.routing import URLRouter
from django.urls import path

from example.routing import websocket_urlpatterns
from pyhub_ai.consumers import AgentChatConsumer

from . import seed004


class PlainChatConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"


application = URLRouter(
    [
        *websocket_urlpatterns,
        path("ws/plain/<int:conversation_pk>/", PlainChatConsumer.as_asgi()),
        path("ws/seed/chat/<int:conversation_pk>/", seed004.LanguageTutorChatConsumer.as_asgi()),
    ]
)
