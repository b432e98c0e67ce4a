from django.urls import path

import pyhub_ai.converters  # noqa: F401  (registers <pk:...>: ids out of the database's range are a 404)

from . import views

app_name = "example"

urlpatterns = [
    path("", views.RoomListView.as_view(), name="room_list"),
    path("chat/new/", views.RoomCreateView.as_view(), name="room_new"),
    path("data/", views.sales_analyst_chat, name="data"),
    path("search/", views.search, name="search"),
    path("chat/<pk:room_pk>/", views.language_tutor_chat, name="chat"),
    path("chat/<pk:room_pk>/edit/", views.RoomUpdateView.as_view(), name="room_edit"),
    path("chat/<pk:room_pk>/delete/", views.RoomDeleteView.as_view(), name="room_delete"),
    path("chat/<pk:room_pk>/conversations/new/", views.conversation_new, name="conversation_new"),
    path("chat/<pk:room_pk>/conversations/<pk:conversation_pk>/", views.conversation_chat, name="conversation"),
]
