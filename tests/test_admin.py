"""The admin shows conversations as readable, escaped threads, even when a row is corrupt."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils.html import escape
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from pyhub_ai.models import Conversation, ConversationMessage

pytestmark = pytest.mark.django_db

CORRUPT_CONTENT = {"v": 1, "type": "human", "data": {"content": 5}}


def store(conversation, message, **fields):
    row = ConversationMessage.from_message(message, conversation=conversation, **fields)
    row.save()
    return row


@pytest.fixture
def conversation(user_a):
    conversation = Conversation.objects.create(user=user_a, title="Weather chat")
    store(conversation, HumanMessage("What is the weather in Seoul?"), user=user_a)
    store(
        conversation,
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Seoul"}, "id": "call_1"}]),
        user=user_a,
    )
    store(conversation, ToolMessage("Sunny, 21°C", tool_call_id="call_1", name="get_weather"), user=user_a)
    store(conversation, AIMessage("It is sunny and 21°C in Seoul. Also, I was cut off"), user=user_a, status="interrupted")
    return conversation


@pytest.fixture
def corrupt_row(conversation):
    return ConversationMessage.objects.create(conversation=conversation, role="human", content=CORRUPT_CONTENT)


def page(client, url):
    response = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    return response.content.decode()


def conversation_page(client, conversation):
    return page(client, reverse("admin:pyhub_ai_conversation_change", args=[conversation.pk]))


def cell(html, field):
    """The text of the first changelist cell of ``field``."""
    match = re.search(rf'class="field-{field}[^"]*">(.*?)</t[dh]>', html, re.S)
    assert match, f"no {field} column"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


# -- The conversation list --------------------------------------------------------------------


def test_the_conversation_list_shows_title_owner_and_message_count(admin_client, conversation):
    html = page(admin_client, reverse("admin:pyhub_ai_conversation_changelist"))

    assert cell(html, "__str__") == "Weather chat"
    assert cell(html, "user") == "alice"
    assert cell(html, "message_count") == "4"


# -- One conversation -------------------------------------------------------------------------


def test_the_conversation_page_shows_each_messages_role_text_and_status(admin_client, conversation):
    html = conversation_page(admin_client, conversation)

    assert "What is the weather in Seoul?" in html
    assert "Sunny, 21°C" in html
    assert "It is sunny and 21°C in Seoul. Also, I was cut off" in html
    assert len(re.findall(r'class="pyhub-admin-msg"[^>]*data-role="ai"', html)) == 2
    assert re.search(r'data-role="tool"[^>]*>\s*<div class="pyhub-admin-meta">\s*<strong class="pyhub-admin-role">tool</strong>', html)
    assert re.search(r'data-role="ai" data-status="interrupted">\s*<div class="pyhub-admin-meta">\s*<strong class="pyhub-admin-role">AI</strong>', html)
    assert '<span class="pyhub-admin-status" data-status="interrupted">interrupted</span>' in html


def test_the_conversation_page_does_not_show_the_stored_json(admin_client, conversation):
    html = conversation_page(admin_client, conversation)

    assert '"v": 1' not in html
    assert "&quot;v&quot;: 1" not in html
    assert "additional_kwargs" not in html


def test_the_conversation_page_shows_an_ai_messages_tool_calls(admin_client, conversation):
    html = conversation_page(admin_client, conversation)

    assert "get_weather(" in html
    assert "&quot;city&quot;: &quot;Seoul&quot;" in html


@pytest.mark.parametrize("markup", ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"])
def test_html_in_a_message_is_shown_escaped(admin_client, conversation, markup):
    store(conversation, HumanMessage(f"look: {markup}"))

    html = conversation_page(admin_client, conversation)

    assert markup not in html
    assert escape(markup) in html


def test_html_in_tool_call_arguments_is_shown_escaped(admin_client, conversation):
    store(conversation, AIMessage("", tool_calls=[{"name": "search", "args": {"q": "<script>alert(1)</script>"}, "id": "c"}]))

    html = conversation_page(admin_client, conversation)

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_conversation_page_shows_a_corrupt_row_as_unreadable(admin_client, conversation, corrupt_row):
    html = conversation_page(admin_client, conversation)

    assert "Unreadable message" in html
    assert "What is the weather in Seoul?" in html


# -- The message pages --------------------------------------------------------------------------


def test_the_message_list_loads_and_marks_a_corrupt_row_unreadable(admin_client, conversation, corrupt_row):
    html = page(admin_client, reverse("admin:pyhub_ai_conversationmessage_changelist"))

    assert "What is the weather in Seoul?" in html
    assert "(unreadable)" in html


def test_a_messages_page_loads_with_its_rendered_text(admin_client, conversation):
    row = conversation.messages.get(role="tool")

    html = page(admin_client, reverse("admin:pyhub_ai_conversationmessage_change", args=[row.pk]))

    assert "Sunny, 21°C" in html


def test_a_corrupt_messages_page_loads(admin_client, corrupt_row):
    html = page(admin_client, reverse("admin:pyhub_ai_conversationmessage_change", args=[corrupt_row.pk]))

    assert "Unreadable message" in html


def test_the_conversation_list_shows_the_token_totals(admin_client, conversation):
    Conversation.objects.filter(pk=conversation.pk).update(input_tokens=1234, output_tokens=56)
    html = page(admin_client, reverse("admin:pyhub_ai_conversation_changelist"))
    assert cell(html, "tokens") == "1,234 / 56"  # in / out, one column so the list fits 1280 px


def test_the_thread_shows_which_version_of_a_message_each_branch_holds(admin_client, user_a):
    from pyhub_ai.history import DjangoChatMessageHistory

    chat = Conversation.objects.create(user=user_a)
    history = DjangoChatMessageHistory(conversation=chat, user=user_a)
    history.add_messages([HumanMessage("question"), AIMessage("first answer")])
    first = chat.messages.get(role="ai")
    history.finish_turn(history.start_turn(None, regenerate=first.pk), AIMessage("second answer"))

    html = conversation_page(admin_client, chat)

    assert html.count("version 1 of 2") == 1 and html.count("version 2 of 2") == 1
    question = chat.messages.get(role="human")
    assert html.count(f'href="#message-{question.pk}"') == 2  # both answers follow the one question


@pytest.fixture
def rated(user_a):
    """Three conversations: a reply with a thumbs down and a comment, one with a thumbs up, none."""
    from pyhub_ai import feedback

    conversations = {}
    for title, rating, comment in (("Rated down", "down", "Wrong city"), ("Rated up", "up", ""), ("Not rated", None, "")):
        chat = Conversation.objects.create(user=user_a, title=title)
        store(chat, HumanMessage(f"question of {title}"), user=user_a)
        reply = store(chat, AIMessage(f"answer of {title}"), user=user_a)
        if rating:
            feedback.set_feedback({"conversation_id": chat.pk, "user_id": user_a.pk, "visitor_key": ""}, reply.pk, rating, comment)
        conversations[title] = chat
    return conversations


@pytest.mark.parametrize(
    "value, titles",
    [("down", ["Rated down"]), ("up", ["Rated up"]), ("comment", ["Rated down"]), ("any", ["Rated down", "Rated up"])],
)
def test_the_conversation_list_filters_by_feedback(admin_client, rated, value, titles):
    html = page(admin_client, reverse("admin:pyhub_ai_conversation_changelist") + f"?feedback={value}")

    assert sorted(title for title in rated if f">{title}<" in html) == titles


def test_feedback_is_exported_with_its_reply_and_prompt_as_json_lines(admin_client, rated):
    import json

    response = admin_client.post(
        reverse("admin:pyhub_ai_conversation_changelist"),
        {"action": "export_feedback", "_selected_action": [chat.pk for chat in rated.values()]},
    )

    assert response.status_code == 200 and response["Content-Type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert sorted((r["rating"], r["comment"], r["message"]["text"]) for r in records) == [
        ("down", "Wrong city", "answer of Rated down"), ("up", "", "answer of Rated up")
    ]
    assert all(r["context"][0]["content"]["data"]["content"] == r["message"]["text"].replace("answer", "question") for r in records)
