"""The conversation admin: its list columns, filters and search, the paginated thread, export and clear."""
from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from langchain_core.messages import AIMessage, HumanMessage

from pyhub_ai import transfer
from pyhub_ai.models import Conversation, ConversationMessage

from .test_admin import cell, page, store

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:pyhub_ai_conversation_changelist"


def change_url(conversation) -> str:
    return reverse("admin:pyhub_ai_conversation_change", args=[conversation.pk])


def listed_titles(html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", title).strip() for title in re.findall(r'class="field-__str__[^"]*">(.*?)</t[dh]>', html, re.S)]


@pytest.fixture
def coffee(user_a):
    conversation = Conversation.objects.create(user=user_a, title="Coffee order")
    store(conversation, HumanMessage("라떼 한 잔 주세요"), user=user_a)
    store(conversation, AIMessage("Here is **your** latte"), user=user_a)
    return conversation


@pytest.fixture
def failed(user_b):
    conversation = Conversation.objects.create(user=user_b, title="Broken turn")
    store(conversation, HumanMessage("tell me a story"), user=user_b)
    store(conversation, AIMessage("Once upon a"), user=user_b, status="error")
    return conversation


# -- The list -------------------------------------------------------------------------------------


def test_the_list_shows_the_status_of_each_conversations_last_turn(admin_client, coffee, failed):
    html = page(admin_client, reverse(CHANGELIST) + "?o=1")  # by title: "Broken turn" first

    assert listed_titles(html) == ["Broken turn", "Coffee order"]
    assert cell(html, "last_turn_status") == "error"
    assert cell(html, "last_activity")


@pytest.mark.parametrize("status, expected", [("error", ["Broken turn"]), ("complete", ["Coffee order"])])
def test_the_list_filters_by_the_status_of_the_last_turn(admin_client, coffee, failed, status, expected):
    html = page(admin_client, reverse(CHANGELIST) + f"?last_turn={status}")

    assert listed_titles(html) == expected


def test_the_list_filters_by_owner(admin_client, coffee, failed, user_b):
    html = page(admin_client, reverse(CHANGELIST) + f"?user__id__exact={user_b.pk}")

    assert listed_titles(html) == ["Broken turn"]


def test_the_list_filters_by_date(admin_client, coffee):
    year = coffee.created_at.year

    assert listed_titles(page(admin_client, reverse(CHANGELIST) + f"?created_at__year={year}")) == ["Coffee order"]
    assert listed_titles(page(admin_client, reverse(CHANGELIST) + f"?created_at__year={year - 1}")) == []


@pytest.mark.parametrize(
    "term, expected",
    [
        ("coffee", ["Coffee order"]),  # title
        ("bob", ["Broken turn"]),  # owner's username
        ("upon", ["Broken turn"]),  # message text
        ("라떼", ["Coffee order"]),  # message text, not ASCII
        ("nowhere", []),
    ],
)
def test_the_list_searches_titles_owners_and_message_text(admin_client, coffee, failed, term, expected):
    html = page(admin_client, reverse(CHANGELIST) + f"?q={term}")

    assert sorted(listed_titles(html)) == expected


def test_a_message_text_search_lists_each_conversation_once_with_its_true_count(admin_client, coffee, user_a):
    store(coffee, HumanMessage("another latte please"), user=user_a)

    html = page(admin_client, reverse(CHANGELIST) + "?q=latte")

    assert listed_titles(html) == ["Coffee order"]
    assert cell(html, "message_count") == "3"


# -- The thread ------------------------------------------------------------------------------------


def test_a_long_thread_is_shown_100_messages_a_page(admin_client, user_a):
    conversation = Conversation.objects.create(user=user_a)
    ConversationMessage.objects.bulk_create(
        [ConversationMessage.from_message(HumanMessage(f"message number {i}"), conversation=conversation, user=user_a) for i in range(1, 251)]
    )

    first, last = page(admin_client, change_url(conversation)), page(admin_client, change_url(conversation) + "?page=3")

    assert first.count('class="pyhub-admin-msg"') == 100 and last.count('class="pyhub-admin-msg"') == 50
    assert "message number 1<" in first and "message number 100<" in first and "message number 101<" not in first
    assert "message number 201<" in last and "message number 250<" in last
    assert "Messages 201–250 of 250, oldest first." in last
    assert '<a href="?page=2">Earlier messages</a>' in last


def test_an_ai_reply_is_left_as_escaped_text_for_the_pages_markdown_renderer(admin_client, coffee):
    store(coffee, AIMessage("**bold** <b onmouseover=alert(1)>x</b>"))

    html = page(admin_client, change_url(coffee))

    assert '<div class="pyhub-admin-text" data-pyhub-markdown>**bold** &lt;b onmouseover=alert(1)&gt;x&lt;/b&gt;</div>' in html
    assert "<b onmouseover" not in html
    assert "pyhub_ai/markdown.js" in html and "pyhub_ai/admin.js" in html


def test_an_owner_less_conversation_labels_each_users_thread(admin_client, user_a, user_b):
    room = Conversation.objects.create()
    store(room, HumanMessage("from alice"), user=user_a)
    store(room, HumanMessage("from bob"), user=user_b)
    store(room, HumanMessage("from a visitor"), visitor_key="abcdef0123456789")

    html = page(admin_client, change_url(room))

    assert "alice&#x27;s thread" in html and "bob&#x27;s thread" in html
    assert "Anonymous visitor abcdef01" in html


def test_the_hidden_starter_message_is_marked_as_hidden(admin_client, coffee):
    store(coffee, HumanMessage("첫 문장으로 대화를 시작해주세요."), visible=False)

    assert "hidden from the chat page" in page(admin_client, change_url(coffee))


# -- Export ----------------------------------------------------------------------------------------


def test_a_conversation_exports_as_json_lines_that_import_reads_back(admin_client, coffee):
    html = page(admin_client, change_url(coffee))
    url = reverse("admin:pyhub_ai_conversation_export_jsonl", args=[coffee.pk])
    assert f'href="{url}"' in html

    response = admin_client.get(url)

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="conversation-{coffee.pk}.jsonl"'
    lines = b"".join(response.streaming_content).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0] == transfer.header_record()
    assert [r["record"] for r in records] == ["header", "conversation", "message", "message"]
    assert records[2]["content"]["data"]["content"] == "라떼 한 잔 주세요"
    summary = transfer.check_export(lines)
    assert (summary.conversations, summary.messages) == (1, 2)


def test_a_conversation_exports_as_a_markdown_transcript(admin_client, coffee):
    response = admin_client.get(reverse("admin:pyhub_ai_conversation_export_markdown", args=[coffee.pk]))

    text = b"".join(response.streaming_content).decode()
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert "## Coffee order" in text
    assert "**You**: 라떼 한 잔 주세요" in text and "**Assistant**: Here is **your** latte" in text


@pytest.mark.parametrize("action, first_line", [("export_jsonl", '{"record": "header"'), ("export_markdown", "## Coffee order")])
def test_the_selected_conversations_export_from_the_list(admin_client, coffee, failed, action, first_line):
    response = admin_client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [coffee.pk, failed.pk]}
    )

    text = b"".join(response.streaming_content).decode()
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-')
    assert text.startswith(first_line)
    assert "Coffee order" in text and "Broken turn" in text


def test_a_staff_user_who_may_only_view_can_export_but_not_clear(coffee, django_user_model):
    viewer = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    client = Client()
    client.force_login(viewer)

    assert client.get(reverse("admin:pyhub_ai_conversation_export_jsonl", args=[coffee.pk])).status_code == 200
    assert client.get(reverse("admin:pyhub_ai_conversation_clear", args=[coffee.pk])).status_code == 403
    assert client.post(reverse("admin:pyhub_ai_conversation_clear", args=[coffee.pk]), {"post": "yes"}).status_code == 403
    assert coffee.messages.count() == 2


# -- Clear -------------------------------------------------------------------------------------------


def test_clearing_a_conversation_asks_for_confirmation_first(admin_client, coffee):
    html = page(admin_client, reverse("admin:pyhub_ai_conversation_clear", args=[coffee.pk]))

    assert "This deletes 2 messages" in html
    assert coffee.messages.count() == 2


def test_clearing_a_conversation_deletes_its_messages_and_keeps_it(admin_client, coffee, failed):
    response = admin_client.post(reverse("admin:pyhub_ai_conversation_clear", args=[coffee.pk]), {"post": "yes"})

    assert response.status_code == 302 and response["Location"] == change_url(coffee)
    assert Conversation.objects.filter(pk=coffee.pk).exists()
    assert coffee.messages.count() == 0 and failed.messages.count() == 2


def test_clearing_needs_the_csrf_token(coffee, django_user_model):
    admin_user = django_user_model.objects.create_superuser(username="root", password="x")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = client.post(reverse("admin:pyhub_ai_conversation_clear", args=[coffee.pk]), {"post": "yes"})

    assert response.status_code == 403
    assert coffee.messages.count() == 2


def test_the_clear_action_confirms_then_clears_the_selected_conversations(admin_client, coffee, failed, user_a):
    other = Conversation.objects.create(user=user_a, title="Untouched")
    store(other, HumanMessage("keep me"), user=user_a)
    selection = {"action": "clear_messages", "_selected_action": [coffee.pk, failed.pk]}

    confirmation = admin_client.post(reverse(CHANGELIST), selection)
    assert confirmation.status_code == 200
    assert "This deletes 4 messages" in confirmation.content.decode()
    assert ConversationMessage.objects.count() == 5

    response = admin_client.post(reverse(CHANGELIST), {**selection, "post": "yes"})

    assert response.status_code == 302
    assert list(ConversationMessage.objects.values_list("conversation__title", flat=True)) == ["Untouched"]
    assert Conversation.objects.count() == 3


@pytest.mark.parametrize(
    "query",
    [
        "id__in=9223372036854775808",
        "created_at__year=1000000000000000000000000000000",
        "user__id__exact=99999999999999999999999999",
        "input_tokens__gt=1e400",
    ],
)
@pytest.mark.parametrize("model", ["conversation", "conversationmessage"])
def test_a_changelist_query_out_of_range_is_refused_like_an_unknown_filter(admin_client, coffee, model, query):
    if model == "conversationmessage" and not query.startswith(("id", "user")):
        query = query.replace("created_at__year", "created_at__gte").replace("input_tokens", "token_count")
    response = admin_client.get(f"/admin/pyhub_ai/{model}/?{query}")
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize("selected", ["x", "9223372036854775808", "1e3"])
def test_an_action_on_a_selection_that_is_not_an_id_changes_nothing(admin_client, coffee, selected):
    response = admin_client.post(
        "/admin/pyhub_ai/conversation/", {"action": "clear_messages", "_selected_action": [selected], "post": "yes"}, follow=True
    )
    assert response.status_code == 200
    assert ConversationMessage.objects.filter(conversation=coffee).exists()
