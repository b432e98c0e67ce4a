from django.urls import path

from . import views

app_name = "example"

urlpatterns = [
    path("", views.RoomListView.as_view(), name="room_list"),
    path("chat/new/", views.RoomCreateView.as_view(), name="room_new"),
    path("data/", views.sales_analyst_chat, name="data"),
    path("chat/<int:room_pk>/", views.language_tutor_chat, name="chat"),
    path("chat/<int:room_pk>/edit/", views.RoomUpdateView.as_view(), name="room_edit"),
    path("chat/<int:room_pk>/delete/", views.RoomDeleteView.as_view(), name="room_delete"),
    path("chat/<int:room_pk>/conversations/new/", views.conversation_new, name="conversation_new"),
    path("chat/<int:room_pk>/conversations/<int:conversation_pk>/", views.conversation_chat, name="conversation"),
]
