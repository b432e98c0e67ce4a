"""The example app's pages: rooms are shared, every user's messages and threads are their own."""
from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from langchain_core.messages import AIMessage, HumanMessage

from example.forms import LLMChatRoomForm
from example.models import LLMChatRoom, RoomConversation
from pyhub_ai.models import Conversation, ConversationMessage

pytestmark = pytest.mark.django_db


def store(conversation, user, *messages, visible=True):
    for message in messages:
        ConversationMessage.from_message(message, conversation=conversation, user=user, visible=visible).save()


def text_of(response) -> str:
    """The page's visible text, roughly: tags removed, whitespace collapsed."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.fixture
def alice(client, user_a):
    client.force_login(user_a)
    return client


@pytest.fixture
def bob(user_b):
    client = Client()
    client.force_login(user_b)
    return client


@pytest.fixture
def room(user_a):
    return LLMChatRoom.objects.create(created_by=user_a)


# -- Signing in -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/example/",
        "/example/chat/new/",
        "/example/chat/1/",
        "/example/chat/1/edit/",
        "/example/chat/1/delete/",
        "/example/chat/1/conversations/1/",
    ],
)
def test_every_page_asks_an_anonymous_visitor_to_sign_in(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_starting_a_conversation_asks_an_anonymous_visitor_to_sign_in(client, room):
    response = client.post(reverse("example:conversation_new", args=[room.pk]))

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not RoomConversation.objects.exists()


# -- The room list ------------------------------------------------------------------------------


def test_an_untitled_room_keeps_its_settings_as_its_title_after_the_first_message(alice, room, user_a):
    store(room.conversation, user_a, HumanMessage("Here is code:\nprint(1)"), AIMessage("好的"))

    page = text_of(alice.get("/example/"))

    assert "Chinese · Ordering coffee at Starbucks" in page and "Here is code:" not in page
    assert "2 messages" in page


def test_the_room_list_prefers_the_rooms_own_title(alice, room, user_a):
    room.title = "Coffee practice"
    room.save()
    store(room.conversation, user_a, HumanMessage("hello"))

    page = text_of(alice.get("/example/"))

    assert "Coffee practice" in page and "hello" not in page


def test_an_untitled_room_without_messages_is_named_after_its_settings(alice, room):
    page = text_of(alice.get("/example/"))

    assert "Chinese · Ordering coffee at Starbucks" in page
    assert "0 messages" in page


def test_the_room_list_never_shows_another_users_messages_or_counts(bob, room, user_a):
    store(room.conversation, user_a, HumanMessage("alice's secret"), AIMessage("noted"))

    page = text_of(bob.get("/example/"))

    assert "alice's secret" not in page
    assert "0 messages" in page
    assert "Chinese · Ordering coffee at Starbucks" in page


def test_the_room_list_counts_the_users_messages_in_every_conversation_of_the_room(alice, room, user_a):
    store(room.conversation, user_a, HumanMessage("one"), AIMessage("two"))
    later = Conversation.objects.create(user=user_a)
    RoomConversation.objects.create(room=room, conversation=later)
    store(later, user_a, HumanMessage("three"))
    store(room.conversation, user_a, HumanMessage("hidden starter"), visible=False)

    page = text_of(alice.get("/example/"))

    assert "3 messages" in page
    assert "last activity" in page


def test_rename_and_delete_links_are_shown_only_to_the_rooms_creator(alice, bob, room):
    edit_url = reverse("example:room_edit", args=[room.pk])

    assert edit_url in alice.get("/example/").content.decode()
    assert edit_url not in bob.get("/example/").content.decode()


# -- Creating, renaming and deleting a room ---------------------------------------------------------


def test_creating_a_room_stores_its_settings_and_opens_its_chat(alice, user_a):
    response = alice.post(
        reverse("example:room_new"),
        {"title": "  Tapas   night ", "language": "es", "situation": "restaurant", "level": "intermediate"},
    )

    room = LLMChatRoom.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("example:chat", args=[room.pk])
    assert (room.title, room.language, room.situation, room.level) == ("Tapas night", "es", "restaurant", "intermediate")
    assert room.created_by == user_a
    assert room.conversation.user is None  # the tutorial's shared room conversation


def test_the_room_form_refuses_a_choice_it_does_not_offer(alice):
    response = alice.post(reverse("example:room_new"), {"title": "", "language": "tlh", "situation": "starbucks", "level": "beginner"})

    assert response.status_code == 200
    assert "Select a valid choice" in text_of(response)
    assert not LLMChatRoom.objects.exists()


def test_the_room_form_defaults_to_the_tutorials_room():
    form = LLMChatRoomForm()

    assert [form[name].value() for name in ("language", "situation", "level")] == ["zh", "starbucks", "beginner"]
    assert LLMChatRoomForm(data={"title": "", "language": "zh", "situation": "starbucks", "level": "beginner"}).is_valid()


def test_the_creator_renames_a_room(alice, room):
    response = alice.post(
        reverse("example:room_edit", args=[room.pk]),
        {"title": "Renamed", "language": "ja", "situation": "hotel", "level": "advanced"},
    )

    assert response.status_code == 302
    room.refresh_from_db()
    assert (room.title, room.language, room.situation, room.level) == ("Renamed", "ja", "hotel", "advanced")


def test_another_user_cannot_rename_or_delete_a_room(bob, room):
    assert bob.get(reverse("example:room_edit", args=[room.pk])).status_code == 403
    assert bob.post(reverse("example:room_edit", args=[room.pk]), {"title": "mine", "language": "zh", "situation": "starbucks", "level": "beginner"}).status_code == 403
    assert bob.post(reverse("example:room_delete", args=[room.pk])).status_code == 403

    room.refresh_from_db()
    assert room.title == ""


def test_staff_may_manage_a_room_with_no_creator(client, django_user_model):
    staff = django_user_model.objects.create_user(username="staff", password="x", is_staff=True)
    client.force_login(staff)
    room = LLMChatRoom.objects.create()

    assert client.get(reverse("example:room_edit", args=[room.pk])).status_code == 200


def test_deleting_asks_for_confirmation_first(alice, room):
    response = alice.get(reverse("example:room_delete", args=[room.pk]))

    assert response.status_code == 200
    assert "Every conversation in it is deleted too" in text_of(response)
    assert LLMChatRoom.objects.filter(pk=room.pk).exists()


@pytest.mark.parametrize(
    "name, data",
    [
        ("example:room_new", {"language": "zh", "situation": "starbucks", "level": "beginner"}),
        ("example:room_edit", {"title": "x", "language": "zh", "situation": "starbucks", "level": "beginner"}),
        ("example:room_delete", {}),
        ("example:conversation_new", {}),
    ],
)
def test_state_changing_views_refuse_a_post_without_the_csrf_token(user_a, room, name, data):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_a)
    url = reverse(name) if name == "example:room_new" else reverse(name, args=[room.pk])
    before = (LLMChatRoom.objects.count(), Conversation.objects.count())

    response = client.post(url, data)

    assert response.status_code == 403
    room.refresh_from_db()
    assert room.title == "" and (LLMChatRoom.objects.count(), Conversation.objects.count()) == before


def test_starting_a_conversation_is_post_only(alice, room):
    assert alice.get(reverse("example:conversation_new", args=[room.pk])).status_code == 405


# -- The chat page and its conversations --------------------------------------------------------------


def test_the_tutorial_url_still_creates_the_room_it_names(alice):
    response = alice.get("/example/chat/7/")

    assert response.status_code == 200
    room = LLMChatRoom.objects.get(pk=7)
    assert f'data-ws-url="/ws/example/chat/{room.conversation_id}/"' in response.content.decode()


def test_the_chat_page_shows_the_room_settings_and_its_conversations(alice, room, user_a):
    store(room.conversation, user_a, HumanMessage("hello tutor"))

    page = text_of(alice.get(reverse("example:chat", args=[room.pk])))

    assert "Chinese · Ordering coffee at Starbucks" in page and "Beginner" in page
    assert page.count("Chinese · Ordering coffee at Starbucks") == 2  # the page title and the chat header, not a third time
    assert "hello tutor" in page
    assert "New conversation" in page


def test_a_new_conversation_belongs_to_the_user_and_opens_on_its_own_socket(alice, room, user_a):
    response = alice.post(reverse("example:conversation_new", args=[room.pk]))

    link = RoomConversation.objects.get()
    assert link.room == room and link.conversation.user == user_a
    assert response["Location"] == reverse("example:conversation", args=[room.pk, link.conversation_id])
    page = alice.get(response["Location"]).content.decode()
    assert f'data-ws-url="/ws/example/chat/{link.conversation_id}/"' in page
    assert 'aria-current="page"' in page


def test_the_conversation_list_shows_only_the_users_own_conversations(alice, bob, room, user_a, user_b):
    bobs = Conversation.objects.create(user=user_b)
    RoomConversation.objects.create(room=room, conversation=bobs)
    store(bobs, user_b, HumanMessage("bob's private plans"))
    store(room.conversation, user_b, HumanMessage("bob in the shared room"))

    page = alice.get(reverse("example:chat", args=[room.pk])).content.decode()

    assert "bob's private plans" not in page and "bob in the shared room" not in page
    assert reverse("example:conversation", args=[room.pk, bobs.pk]) not in page
    assert "Conversations (1)" in text_of(alice.get(reverse("example:chat", args=[room.pk])))


def test_another_users_conversation_is_not_found(alice, room, user_b):
    bobs = Conversation.objects.create(user=user_b)
    RoomConversation.objects.create(room=room, conversation=bobs)

    assert alice.get(reverse("example:conversation", args=[room.pk, bobs.pk])).status_code == 404


def test_a_conversation_of_another_room_is_not_found(alice, room, user_a):
    other = LLMChatRoom.objects.create()
    mine = Conversation.objects.create(user=user_a)
    RoomConversation.objects.create(room=other, conversation=mine)

    assert alice.get(reverse("example:conversation", args=[room.pk, mine.pk])).status_code == 404


def test_the_rooms_first_conversation_opens_on_the_tutorial_url(alice, room):
    response = alice.get(reverse("example:conversation", args=[room.pk, room.conversation_id]))

    assert response.status_code == 302 and response["Location"] == reverse("example:chat", args=[room.pk])


def test_the_project_pages_offer_a_language_selector(alice):
    page = alice.get("/example/").content.decode()

    assert 'action="/i18n/setlang/"' in page
    assert '<option value="ko" lang="ko">한국어</option>' in page


def test_choosing_korean_switches_the_pages_to_korean(alice):
    response = alice.post("/i18n/setlang/", {"language": "ko", "next": "/example/"}, follow=True)

    assert '<html lang="ko">' in response.content.decode()
    assert "채팅방" in text_of(response)


def test_search_finds_only_the_users_own_messages_and_links_each_to_its_conversation(alice, room, user_a, user_b):
    store(room.conversation, user_a, HumanMessage("latte at the station"))
    store(room.conversation, user_b, HumanMessage("latte for bob"))

    response = alice.get(reverse("example:search"), {"q": "latte"})

    page = text_of(response)
    assert "latte at the station" in page and "latte for bob" not in page
    mine = ConversationMessage.objects.get(user=user_a, role="human")
    assert f'href="/example/chat/{room.pk}/#message-{mine.pk}"' in response.content.decode()


def test_search_needs_a_signed_in_user(client):
    response = client.get(reverse("example:search"), {"q": "latte"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
