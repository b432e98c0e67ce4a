"""Conversations and their stored messages."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone, translation
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage

from pyhub_ai.models import Conversation, ConversationMessage

THREAD_INDEX = "pyhub_ai_msg_thread_idx"


def add(conversation, *messages, **fields):
    ConversationMessage.objects.bulk_create(
        [ConversationMessage.from_message(message, conversation=conversation, **fields) for message in messages]
    )


def message_count(conversation):
    return ConversationMessage.objects.filter(conversation=conversation).count()


# -- Clearing --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_clear_deletes_every_message_of_the_conversation_and_no_other(user_a, user_b):
    room = Conversation.objects.create()
    other = Conversation.objects.create()
    add(room, HumanMessage("alice here"), AIMessage("hi alice"), user=user_a)
    add(room, HumanMessage("bob here"), user=user_b)
    add(other, HumanMessage("keep me"), user=user_a)

    room.clear()

    assert message_count(room) == 0
    assert [row.message.content for row in other.messages.all()] == ["keep me"]


@pytest.mark.django_db(transaction=True)
async def test_aclear_deletes_every_message_of_the_conversation_and_no_other():
    room = await Conversation.objects.acreate()
    other = await Conversation.objects.acreate()
    await ConversationMessage.objects.abulk_create(
        [
            ConversationMessage.from_message(HumanMessage("one"), conversation=room),
            ConversationMessage.from_message(AIMessage("two"), conversation=room, visitor_key="abc"),
            ConversationMessage.from_message(HumanMessage("keep me"), conversation=other),
        ]
    )

    await room.aclear()

    assert await ConversationMessage.objects.filter(conversation=room).acount() == 0
    assert [row.message.content async for row in ConversationMessage.objects.filter(conversation=other)] == ["keep me"]


# -- How they print --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_conversation_prints_as_its_title():
    assert str(Conversation.objects.create(title="Coffee orders")) == "Coffee orders"


@pytest.mark.django_db
def test_a_conversation_without_a_title_prints_as_its_number():
    conversation = Conversation.objects.create()

    with translation.override("en"):
        assert str(conversation) == f"Conversation #{conversation.pk}"


@pytest.mark.django_db
def test_a_message_prints_as_its_role_and_number():
    row = ConversationMessage.from_message(AIMessage("hi"), conversation=Conversation.objects.create())
    row.save()

    with translation.override("en"):
        assert str(row) == f"AI #{row.pk}"


# -- from_message ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, role",
    [
        (HumanMessage("hi"), "human"),
        (AIMessage("hello"), "ai"),
        (SystemMessage("be nice"), "system"),
        (ToolMessage("42", tool_call_id="call_1"), "tool"),
        (AIMessageChunk(content="hel"), "ai"),
    ],
    ids=["human", "ai", "system", "tool", "ai chunk"],
)
def test_from_message_sets_the_role(message, role):
    assert ConversationMessage.from_message(message).role == role


def test_from_message_stores_the_message_it_was_given():
    message = AIMessage("hello", id="run-1")

    assert ConversationMessage.from_message(message).message == message


# -- Ordering and indexes ----------------------------------------------------------------------


@pytest.mark.django_db
def test_messages_come_back_in_the_order_they_were_stored():
    conversation = Conversation.objects.create()
    add(conversation, HumanMessage("first"), AIMessage("second"), HumanMessage("third"))

    assert [row.message.content for row in ConversationMessage.objects.all()] == ["first", "second", "third"]


@pytest.mark.django_db
def test_the_most_recently_updated_conversation_comes_first():
    older = Conversation.objects.create(title="older")
    newer = Conversation.objects.create(title="newer")
    Conversation.objects.filter(pk=older.pk).update(updated_at=timezone.now() + timedelta(minutes=1))

    assert list(Conversation.objects.all()) == [older, newer]


def test_the_thread_index_is_declared():
    assert THREAD_INDEX in [index.name for index in ConversationMessage._meta.indexes]


@pytest.mark.django_db
def test_the_last_messages_of_a_thread_are_read_through_the_thread_index(user_a):
    if connection.vendor != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; other databases plan differently.")
    conversation = Conversation.objects.create()
    queryset = ConversationMessage.objects.filter(conversation_id=conversation.pk, user_id=user_a.pk, visitor_key="").order_by("-pk")[:50]
    sql, params = queryset.query.sql_with_params()

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        plan = " ".join(str(row[-1]) for row in cursor.fetchall())

    assert THREAD_INDEX in plan
    assert "TEMP B-TREE" not in plan  # read in index order, not sorted afterwards


# -- Migrations ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_migrations_match_the_models():
    call_command("makemigrations", "pyhub_ai", "--check", "--dry-run", verbosity=0)


FOREIGN_KEYS_SERVED_BY_A_COMPOSITE_INDEX = [
    ("pyhub_ai_conversationmessage", "conversation_id"),
    ("pyhub_ai_checkpoint", "thread_id"),
    ("pyhub_ai_checkpointblob", "thread_id"),
    ("pyhub_ai_checkpointwrite", "thread_id"),
]


def _indexes_starting_with(table, column):
    """``{name: columns}`` of ``table``'s indexes and unique constraints whose first column is ``column``."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {
        name: info["columns"]
        for name, info in constraints.items()
        if (info["index"] or info["unique"]) and not info["primary_key"] and info["columns"][:1] == [column]
    }


def _single_column_indexes():
    return {
        (table, column): [name for name, columns in _indexes_starting_with(table, column).items() if columns == [column]]
        for table, column in FOREIGN_KEYS_SERVED_BY_A_COMPOSITE_INDEX
    }


@pytest.mark.django_db
def test_foreign_keys_that_start_a_composite_index_have_no_index_of_their_own():
    for table, column in FOREIGN_KEYS_SERVED_BY_A_COMPOSITE_INDEX:
        indexes = _indexes_starting_with(table, column)
        assert indexes, f"{table}.{column} is the first column of no index"
        assert all(len(columns) > 1 for columns in indexes.values()), indexes


@pytest.mark.django_db(transaction=True)
def test_migration_0009_drops_the_indexes_and_keeps_the_search_triggers(user_a):
    from pyhub_ai.search import search_messages

    call_command("migrate", "pyhub_ai", "0008", verbosity=0)
    try:
        assert all(len(names) == 1 for names in _single_column_indexes().values())
    finally:
        call_command("migrate", "pyhub_ai", verbosity=0)
    assert all(names == [] for names in _single_column_indexes().values())

    conversation = Conversation.objects.create(user=user_a)
    add(conversation, HumanMessage(content="migrations keep the search"), user=user_a)
    assert [hit.message.pk for hit in search_messages(user_a, "search")] == list(
        ConversationMessage.objects.filter(conversation=conversation).values_list("pk", flat=True)
    )
