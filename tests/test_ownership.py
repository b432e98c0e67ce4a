"""Nobody deletes what is not theirs, and no id a visitor can type is a server error.

Through HTTP (Django's test client, the whole middleware stack): the demo's room deletion, and
URLs whose ids are out of the database's range. The rules are written in docs/security.md.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from langchain_core.messages import HumanMessage

from example.models import LLMChatRoom, RoomConversation
from pyhub_ai.models import Conversation, ConversationMessage

pytestmark = pytest.mark.django_db

TOO_BIG = ["9223372036854775808", str(10**30), "0"]


def store(conversation, user, text, visitor_key=""):
    ConversationMessage.from_message(HumanMessage(text), conversation=conversation, user=user, visitor_key=visitor_key).save()


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def room(user_a):
    return LLMChatRoom.objects.create(created_by=user_a)


# -- Ids out of range ------------------------------------------------------------------------------


@pytest.mark.parametrize("number", TOO_BIG)
@pytest.mark.parametrize(
    "url",
    [
        "/example/chat/{n}/",
        "/example/chat/{n}/edit/",
        "/example/chat/{n}/delete/",
        "/example/chat/{n}/conversations/new/",
        "/example/chat/1/conversations/{n}/",
        "/example/chat/{n}/conversations/1/",
    ],
)
def test_an_id_out_of_range_is_not_found(user_a, room, url, number):
    client = signed_in(user_a)
    response = client.post(url.format(n=number)) if url.endswith("new/") else client.get(url.format(n=number))
    assert response.status_code == 404
    assert LLMChatRoom.objects.count() == 1


# -- Deleting a room -------------------------------------------------------------------------------


def test_the_creator_deletes_a_room_with_only_their_own_conversations(user_a, room):
    store(room.conversation, user_a, "my thread")
    own = Conversation.objects.create(user=user_a)
    RoomConversation.objects.create(room=room, conversation=own)
    other_room = LLMChatRoom.objects.create()

    response = signed_in(user_a).post(reverse("example:room_delete", args=[room.pk]))

    assert response.status_code == 302 and response["Location"] == reverse("example:room_list")
    assert list(LLMChatRoom.objects.all()) == [other_room]
    assert list(Conversation.objects.all()) == [other_room.conversation]
    assert not ConversationMessage.objects.exists()


@pytest.mark.parametrize("whose", ["another user's thread", "another user's conversation", "an anonymous visitor's thread"])
def test_the_creator_cannot_delete_a_room_where_others_have_conversations(user_a, user_b, room, whose):
    store(room.conversation, user_a, "my thread")
    if whose == "another user's thread":
        store(room.conversation, user_b, "bob's private thread")
    elif whose == "another user's conversation":
        bobs = Conversation.objects.create(user=user_b)
        RoomConversation.objects.create(room=room, conversation=bobs)
        store(bobs, user_b, "bob's own conversation")
    else:
        store(room.conversation, None, "a visitor's thread", visitor_key="f" * 64)
    others = list(ConversationMessage.objects.exclude(user=user_a).values_list("pk", flat=True))
    client = signed_in(user_a)

    confirmation = client.get(reverse("example:room_delete", args=[room.pk]))
    response = client.post(reverse("example:room_delete", args=[room.pk]), follow=True)

    assert "Other people have conversations in this room" in confirmation.content.decode()
    assert "Other people have conversations in this room" in response.content.decode()
    assert LLMChatRoom.objects.filter(pk=room.pk).exists()
    assert list(ConversationMessage.objects.exclude(user=user_a).values_list("pk", flat=True)) == others
    assert ConversationMessage.objects.filter(user=user_a).count() == 1


def test_staff_without_the_permission_to_delete_conversations_cannot_delete_other_peoples(django_user_model, user_b):
    staff = django_user_model.objects.create_user(username="staff", password="x", is_staff=True)
    room = LLMChatRoom.objects.create()
    store(room.conversation, user_b, "bob's private thread")

    signed_in(staff).post(reverse("example:room_delete", args=[room.pk]))

    assert LLMChatRoom.objects.filter(pk=room.pk).exists()
    assert ConversationMessage.objects.filter(user=user_b).exists()


def test_a_moderator_with_the_permission_deletes_the_room_with_everything_in_it(django_user_model, user_b):
    moderator = django_user_model.objects.create_user(username="moderator", password="x", is_staff=True)
    moderator.user_permissions.add(Permission.objects.get(codename="delete_conversation"))
    room = LLMChatRoom.objects.create()
    store(room.conversation, user_b, "bob's private thread")
    bobs = Conversation.objects.create(user=user_b)
    RoomConversation.objects.create(room=room, conversation=bobs)

    response = signed_in(moderator).post(reverse("example:room_delete", args=[room.pk]))

    assert response.status_code == 302
    assert not LLMChatRoom.objects.exists() and not Conversation.objects.exists() and not ConversationMessage.objects.exists()
