"""Searching one's own messages (pyhub_ai.search): the full-text index of migration 0006."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from pyhub_ai.models import Conversation, ConversationMessage
from pyhub_ai.search import search_messages

pytestmark = pytest.mark.django_db


def store(conversation, message, user, **fields):
    row = ConversationMessage.from_message(message, conversation=conversation, user=user, **fields)
    row.save()
    return row


def texts(hits):
    return [hit.message.message.text for hit in hits]


def in_sqlite_index(row):
    """Whether SQLite's full-text index holds ``row`` (``True`` on other databases)."""
    if connection.vendor != "sqlite":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pyhub_ai_message_fts WHERE rowid = %s", [row.pk])
        return cursor.fetchone()[0] == 1


def test_a_korean_word_is_found_inside_a_word_with_its_particle(user_a):
    chat = Conversation.objects.create(user=user_a)
    store(chat, HumanMessage("어제 스타벅스에서 커피를 주문했어요"), user_a)
    store(chat, AIMessage("좋아요! 다음에는 차를 주문해 보세요."), user_a)

    hits = search_messages(user_a, "스타벅스")

    assert texts(hits) == ["어제 스타벅스에서 커피를 주문했어요"]
    assert (hits[0].before, hits[0].match, hits[0].after) == ("어제 ", "스타벅스", "에서 커피를 주문했어요")
    assert texts(search_messages(user_a, "주문")) == ["좋아요! 다음에는 차를 주문해 보세요.", "어제 스타벅스에서 커피를 주문했어요"]


def test_every_word_must_be_found(user_a):
    chat = Conversation.objects.create(user=user_a)
    store(chat, HumanMessage("coffee in Seoul"), user_a)
    store(chat, HumanMessage("coffee in Busan"), user_a)

    assert texts(search_messages(user_a, "Coffee seoul")) == ["coffee in Seoul"]


def test_another_users_messages_are_never_found_not_even_in_a_shared_room(user_a, user_b):
    theirs = Conversation.objects.create(user=user_b)
    store(theirs, HumanMessage("secret plan"), user_b)
    room = Conversation.objects.create()  # owner-less: a private thread each
    store(room, HumanMessage("secret in the room"), user_b)
    store(room, HumanMessage("my own secret"), user_a)

    assert texts(search_messages(user_a, "secret")) == ["my own secret"]


def test_hidden_messages_tool_results_and_edited_text_are_searched_as_shown(user_a):
    chat = Conversation.objects.create(user=user_a)
    store(chat, HumanMessage("hidden starter words"), user_a, visible=False)
    store(chat, ToolMessage("tool words", tool_call_id="1"), user_a)
    reply = store(chat, AIMessage("first words"), user_a)
    reply.content = ConversationMessage.from_message(AIMessage("edited words")).content
    reply.save()

    assert texts(search_messages(user_a, "words")) == ["edited words"]
    assert search_messages(user_a, "first") == []


def test_a_reply_is_found_once_it_has_stopped_streaming(user_a):
    chat = Conversation.objects.create(user=user_a)
    reply = store(chat, AIMessage(""), user_a, status="streaming")
    reply.content = ConversationMessage.from_message(AIMessage("streamed words so far")).content
    reply.save()  # a save while it streams (PYHUB_AI_STREAM_SAVE_INTERVAL)

    assert search_messages(user_a, "streamed") == []
    assert connection.vendor != "sqlite" or not in_sqlite_index(reply)

    reply.status = "interrupted"  # the text stays, only the status changes
    reply.save(update_fields=["status"])
    assert texts(search_messages(user_a, "streamed")) == ["streamed words so far"]
    reply.content = ConversationMessage.from_message(AIMessage("streamed words at last")).content
    reply.status = "complete"
    reply.save()
    assert texts(search_messages(user_a, "streamed")) == ["streamed words at last"]
    assert search_messages(user_a, "far") == []


def test_a_query_without_words_finds_nothing(user_a):
    chat = Conversation.objects.create(user=user_a)
    store(chat, HumanMessage("anything"), user_a)

    assert search_messages(user_a, ' "* OR ) ') == []


@pytest.mark.django_db(transaction=True)
def test_migration_0010_takes_streaming_replies_out_of_the_index_and_back(user_a):
    chat = Conversation.objects.create(user=user_a)
    question = store(chat, HumanMessage("a question"), user_a)
    reply = store(chat, AIMessage("half a reply"), user_a, status="streaming")
    assert in_sqlite_index(question)

    call_command("migrate", "pyhub_ai", "0009", verbosity=0)
    try:
        assert in_sqlite_index(reply) and in_sqlite_index(question)
    finally:
        call_command("migrate", "pyhub_ai", verbosity=0)
    assert in_sqlite_index(question)
    assert connection.vendor != "sqlite" or not in_sqlite_index(reply)
