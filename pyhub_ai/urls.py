"""URLs of the ready-made chat pages: ``path("chat/", include("pyhub_ai.urls"))``.

Their websocket route is ``pyhub_ai.routing.websocket_urlpatterns`` (add it in ``asgi.py``).
Ids are matched by the ``pk`` converter (``pyhub_ai.converters``): an id out of the database's
range is a 404 like any missing conversation.
"""
from __future__ import annotations

from django.urls import path

from . import converters  # noqa: F401  (registers <pk:...>)
from . import attachment_views, views

app_name = "pyhub_ai"

urlpatterns = [
    path("", views.ConversationListView.as_view(), name="conversation_list"),
    path("new/", views.ConversationCreateView.as_view(), name="conversation_create"),
    path("search/", views.ConversationSearchView.as_view(), name="conversation_search"),
    path("<pk:pk>/", views.ConversationChatView.as_view(), name="conversation_chat"),
    path("<pk:pk>/rename/", views.ConversationRenameView.as_view(), name="conversation_rename"),
    path("<pk:pk>/delete/", views.ConversationDeleteView.as_view(), name="conversation_delete"),
    path("<pk:pk>/attachments/", attachment_views.upload, name="attachment_upload"),
    path("attachments/<pk:pk>/", attachment_views.download, name="attachment"),
]
