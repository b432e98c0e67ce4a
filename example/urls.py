from django.urls import path

from . import views

app_name = "example"

urlpatterns = [
    path("", views.room_list, name="room_list"),
    path("chat/new/", views.room_new, name="room_new"),
    path("chat/<int:room_pk>/", views.language_tutor_chat, name="chat"),
]
