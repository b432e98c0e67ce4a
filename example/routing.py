from django.urls import path

from .consumers import LanguageTutorChatConsumer, SalesAnalystChatConsumer

websocket_urlpatterns = [
    path("ws/example/chat/<int:conversation_pk>/", LanguageTutorChatConsumer.as_asgi()),
    path("ws/example/data/<int:conversation_pk>/", SalesAnalystChatConsumer.as_asgi()),
]
