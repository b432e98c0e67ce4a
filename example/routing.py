from django.urls import path

from .consumers import LanguageTutorChatConsumer

websocket_urlpatterns = [
    path("ws/example/chat/<int:conversation_pk>/", LanguageTutorChatConsumer.as_asgi()),
]
