"""The ready-made chat pages (``pyhub_ai.urls`` under ``/chat/``) and their websocket route."""
from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from pyhub_ai.consumers import AgentChatConsumer
from pyhub_ai.models import Conversation
from pyhub_ai.routing import websocket_url

from .conftest import fake_model
from .test_access import close_code
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)

ROUTE = "pyhub_ai/chat"


@pytest.fixture
def alice(client, user_a):
    client.force_login(user_a)
    return user_a


# -- Sign-in and the list ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, args", [("conversation_list", []), ("conversation_chat", [1]), ("conversation_rename", [1])])
def test_every_page_asks_visitors_to_sign_in(client, name, args):
    response = client.get(reverse(f"pyhub_ai:{name}", args=args))
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/?next=")


def test_the_list_shows_the_users_own_conversations_only(client, alice, user_b):
    Conversation.objects.create(user=alice, title="Alice's plans")
    Conversation.objects.create(user=user_b, title="Bob's secrets")
    Conversation.objects.create(title="A shared room")

    page = client.get("/chat/").content.decode()

    assert "Alice&#x27;s plans" in page
    assert "Bob" not in page and "shared room" not in page
    assert 'id="pyhub-new-conversation"' in page


def test_the_list_is_translated_into_korean(client, alice):
    page = client.get("/chat/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "내 대화" in page


# -- New conversation: POST only ----------------------------------------------------------------------


def test_a_post_creates_a_conversation_of_the_user_and_opens_it(client, alice):
    response = client.post("/chat/new/")

    conversation = Conversation.objects.get()
    assert conversation.user == alice
    assert response.status_code == 302 and response.url == f"/chat/{conversation.pk}/"


def test_a_get_creates_nothing(client, alice):
    assert client.get("/chat/new/").status_code == 405
    assert not Conversation.objects.exists()


def test_a_post_without_the_csrf_token_is_refused(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    assert client.post("/chat/new/").status_code == 403
    assert not Conversation.objects.exists()


# -- The chat page --------------------------------------------------------------------------------


def test_the_chat_page_points_at_the_conversations_websocket(client, alice):
    conversation = Conversation.objects.create(user=alice, title="Trip")

    page = client.get(f"/chat/{conversation.pk}/").content.decode()

    assert f'data-ws-url="/ws/pyhub_ai/chat/{conversation.pk}/"' in page
    assert websocket_url(conversation.pk) == f"/ws/pyhub_ai/chat/{conversation.pk}/"
    assert "<title>Trip</title>" in page


@pytest.mark.parametrize(
    "path",
    ["/chat/999999/", "/chat/0/", "/chat/9223372036854775808/", "/chat/" + "9" * 30 + "/", "/chat/999999/rename/", "/chat/999999/delete/"],
)
def test_a_missing_conversation_or_an_id_out_of_range_is_a_404(client, alice, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("suffix", ["", "rename/", "delete/"])
def test_someone_elses_or_a_shared_conversation_is_a_404_like_a_missing_one(client, alice, user_b, suffix):
    for conversation in (Conversation.objects.create(user=user_b), Conversation.objects.create()):
        assert client.get(f"/chat/{conversation.pk}/{suffix}").status_code == 404
        if suffix:  # the forms
            assert client.post(f"/chat/{conversation.pk}/{suffix}", {"title": "mine now"}).status_code == 404
    assert Conversation.objects.count() == 2
    assert not Conversation.objects.filter(title="mine now").exists()


# -- Rename and delete --------------------------------------------------------------------------


def test_rename_changes_the_title(client, alice):
    conversation = Conversation.objects.create(user=alice)

    response = client.post(f"/chat/{conversation.pk}/rename/", {"title": "Weekend plans"})

    assert response.status_code == 302 and response.url == f"/chat/{conversation.pk}/"
    conversation.refresh_from_db()
    assert conversation.title == "Weekend plans"


def test_delete_asks_first_then_deletes_on_post(client, alice):
    conversation = Conversation.objects.create(user=alice, title="Old")

    assert "Delete “Old”" in client.get(f"/chat/{conversation.pk}/delete/").content.decode()
    assert Conversation.objects.exists()
    response = client.post(f"/chat/{conversation.pk}/delete/")

    assert response.status_code == 302 and response.url == "/chat/"
    assert not Conversation.objects.exists()


# -- The websocket route (pyhub_ai.routing) ----------------------------------------------------------


async def test_the_route_serves_a_turn_in_the_users_own_conversation(user_a, use_model):
    use_model(fake_model("Hello there"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route=ROUTE)
    await receive_until(communicator, "history")

    await communicator.send_json_to({"type": "user_message", "text": "Hi"})
    frames = await receive_until(communicator, "stream_end")

    assert frames[-1]["message"]["text"] == "Hello there"
    assert await conversation.messages.acount() == 2
    await communicator.disconnect()


async def test_the_route_refuses_someone_elses_conversation_with_4403(user_a, user_b):
    conversation = await Conversation.objects.acreate(user=user_b)
    assert await close_code(conversation.pk, user_a, route=ROUTE) == 4403


class GreetingConsumer(AgentChatConsumer):
    """A consumer named in PYHUB_AI_CHAT_CONSUMER: it starts every conversation."""

    llm_model = "offline:demo"
    llm_first_user_message_template = "Greet me."


async def test_the_route_serves_the_consumer_named_in_the_setting(user_a):
    conversation = await Conversation.objects.acreate(user=user_a)
    with override_settings(PYHUB_AI_CHAT_CONSUMER="tests.test_pages.GreetingConsumer"):
        communicator = await connect(conversation.pk, user_a, route=ROUTE)
        frames = await receive_until(communicator, "stream_end")
        await communicator.disconnect()

    assert "offline demo model" in frames[-1]["message"]["text"]
    assert await conversation.messages.acount() == 2  # the hidden starter and the greeting


def test_the_default_consumer_uses_the_model_and_prompt_settings():
    from pyhub_ai.consumers import ChatConsumer

    with override_settings(PYHUB_AI_LLM_MODEL="offline:demo", PYHUB_AI_LLM_SYSTEM_PROMPT="Be brief."):
        consumer = ChatConsumer()
        assert consumer.get_llm_model() == "offline:demo"
        assert consumer.get_llm_system_prompt() == "Be brief."


# -- Search -----------------------------------------------------------------------------------------


def test_search_finds_the_users_own_messages_and_links_to_them(client, alice, user_b):
    from langchain_core.messages import HumanMessage

    from pyhub_ai.models import ConversationMessage

    def store(conversation, text, user):
        row = ConversationMessage.from_message(HumanMessage(content=text), conversation=conversation, user=user)
        row.save()
        return row

    mine = Conversation.objects.create(user=alice, title="Trip")
    found = store(mine, "스타벅스에서 커피를 주문합니다", alice)
    store(Conversation.objects.create(), "스타벅스 in a shared room", alice)
    store(Conversation.objects.create(user=user_b), "스타벅스 of bob", user_b)

    page = client.get("/chat/search/", {"q": "스타벅스"}).content.decode()

    assert f'href="/chat/{mine.pk}/#message-{found.pk}"' in page
    assert "<mark>스타벅스</mark>에서 커피를 주문합니다" in page
    assert "shared room" not in page and "of bob" not in page  # no ready-made page shows them


def test_the_list_has_a_search_box(client, alice):
    assert 'action="/chat/search/"' in client.get("/chat/").content.decode()
