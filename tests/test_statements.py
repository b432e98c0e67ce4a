"""The turn's plain-SQL statements (pyhub_ai.statements) read and write what the ORM would."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from langchain_core.messages import AIMessage, HumanMessage

from pyhub_ai import codec, statements
from pyhub_ai.models import Conversation, ConversationMessage, ThreadBranch, ThreadLock

pytestmark = pytest.mark.django_db


def test_update_lock_changes_only_the_row_held_by_the_given_token():
    later = timezone.now() + timedelta(seconds=30)
    ThreadLock.objects.create(key="1:2:", token="", expires_at=timezone.now())
    assert not statements.update_lock("1:2:", "someone-else", new_token="mine", expires_at=later)
    assert statements.update_lock("1:2:", "", new_token="mine", expires_at=later)
    lock = ThreadLock.objects.get(key="1:2:")
    assert (lock.token, lock.expires_at) == ("mine", later)
    assert not statements.update_lock("1:3:", "", new_token="mine", expires_at=later)


@pytest.mark.parametrize("complete_only, limit", [(True, 3), (False, 3), (True, None)])
def test_window_ids_match_the_orm_for_users_and_anonymous_visitors(user_a, complete_only, limit):
    conversation = Conversation.objects.create()
    statuses = ["complete", "complete", "error", "complete", "streaming", "complete"]
    for owner in ({"user": user_a}, {"visitor_key": "v" * 64}, {"visitor_key": "w" * 64}):
        ConversationMessage.objects.bulk_create(
            ConversationMessage.from_message(HumanMessage(content=f"m{i}"), conversation=conversation, status=status, **owner)
            for i, status in enumerate(statuses)
        )
    for user_id, visitor_key in ((user_a.pk, ""), (None, "v" * 64)):
        expected = ConversationMessage.objects.filter(conversation=conversation, user_id=user_id, visitor_key=visitor_key)
        if complete_only:
            expected = expected.filter(status="complete")
        expected = list(expected.order_by("-pk").values_list("pk", "token_count"))[:limit]
        got = statements.window_ids(conversation.pk, user_id, visitor_key, complete_only=complete_only, limit=limit)
        assert got == expected and got


@pytest.mark.parametrize("complete_only, limit", [(True, 3), (False, 3), (True, None)])
def test_thread_window_reads_what_thread_branch_and_window_ids_read(user_a, complete_only, limit):
    conversation = Conversation.objects.create()
    statuses = ["complete", "complete", "error", "complete", "streaming", "complete"]
    for owner in ({"user": user_a}, {"visitor_key": "v" * 64}):
        ConversationMessage.objects.bulk_create(
            ConversationMessage.from_message(HumanMessage(content=f"m{i}"), conversation=conversation, status=status, **owner)
            for i, status in enumerate(statuses)
        )
    branched_key = f"{conversation.pk}:{user_a.pk}:"
    ThreadBranch.objects.create(key=branched_key, conversation=conversation, leaf=1, newest=2)
    for key, user_id, visitor_key in ((branched_key, user_a.pk, ""), (f"{conversation.pk}::{'v' * 64}", None, "v" * 64)):
        got = statements.thread_window(key, conversation.pk, user_id, visitor_key, complete_only=complete_only, limit=limit)
        expected_ids = statements.window_ids(conversation.pk, user_id, visitor_key, complete_only=complete_only, limit=limit)
        assert got == (statements.thread_branch(key, conversation.pk, user_id, visitor_key), expected_ids)
        assert got[1]
    assert statements.thread_window("0::none", conversation.pk, None, "none", complete_only=True, limit=3) == (None, [])


def test_message_contents_and_update_message_round_trip_the_stored_json():
    conversation = Conversation.objects.create()
    row = ConversationMessage.from_message(AIMessage(content=""), conversation=conversation, status="streaming")
    row.save()
    reply = AIMessage(content="안녕 — {\"json\": true}", usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3})
    statements.update_message(row.pk, content=codec.encode(reply), status="complete", token_count=7)

    [(pk, content, status)] = statements.message_contents([row.pk])
    assert (pk, status, codec.decode(content)) == (row.pk, "complete", reply)
    row.refresh_from_db()
    assert (row.status, row.token_count, row.message) == ("complete", 7, reply)


def test_add_conversation_activity_adds_usage_and_sets_the_times():
    conversation = Conversation.objects.create(input_tokens=5, output_tokens=6)
    now = timezone.now()
    statements.add_conversation_activity(conversation.pk, input_tokens=1, output_tokens=2, updated_at=now)
    statements.add_conversation_activity(conversation.pk, input_tokens=3, output_tokens=4, updated_at=now, expires_at=now + timedelta(days=1))
    conversation.refresh_from_db()
    assert (conversation.input_tokens, conversation.output_tokens) == (9, 12)
    assert (conversation.updated_at, conversation.expires_at) == (now, now + timedelta(days=1))


def test_conversation_reads_every_field_as_the_orm_does(user_a):
    expires = timezone.now() + timedelta(days=2)
    stored = Conversation.objects.create(
        user=user_a, title="제목", session_id="s-1", metadata={"topic": ["a", 1]}, expires_at=expires, input_tokens=3, output_tokens=4
    )
    read = statements.conversation(stored.pk)
    expected = Conversation.objects.get(pk=stored.pk)
    assert isinstance(read, Conversation) and not read._state.adding and read._state.db == expected._state.db
    assert {f.attname: getattr(read, f.attname) for f in Conversation._meta.concrete_fields} == {
        f.attname: getattr(expected, f.attname) for f in Conversation._meta.concrete_fields
    }
    assert read.expires_at == expires and read.metadata == {"topic": ["a", 1]}
    blank = Conversation.objects.create()
    assert (statements.conversation(str(blank.pk)).user_id, statements.conversation(blank.pk).session_id) == (None, None)
    assert statements.conversation(blank.pk + 1000) is None
    assert statements.conversation(2**63) is None and statements.conversation(-(2**63) - 1) is None
    with pytest.raises(ValueError):
        statements.conversation("not-an-id")


def test_insert_messages_stores_the_rows_bulk_create_would_and_gives_them_their_ids(user_a):
    conversation = Conversation.objects.create()
    rows = [
        ConversationMessage.from_message(HumanMessage(content="질문"), conversation=conversation, user=user_a, idempotency_key="k1"),
        ConversationMessage.from_message(AIMessage(content=""), conversation=conversation, user=user_a, status="streaming"),
    ]
    assert statements.insert_messages(rows)
    assert rows[0].pk < rows[1].pk and not rows[0]._state.adding and rows[0].created_at is not None
    single = [ConversationMessage.from_message(AIMessage(content="하나"), conversation=conversation, user=user_a)]
    assert statements.insert_messages(single, using="default") == [single[0].pk]  # one row: SQLite's lastrowid
    rows += single
    for row in rows:
        stored = ConversationMessage.objects.get(pk=row.pk)
        fields = [f.attname for f in ConversationMessage._meta.concrete_fields]
        assert [getattr(stored, name) for name in fields] == [getattr(row, name) for name in fields]
    assert rows[0].message == HumanMessage(content="질문")


def test_window_rows_read_the_rows_of_window_ids_with_their_stored_json(user_a):
    conversation = Conversation.objects.create()
    ConversationMessage.objects.bulk_create(
        ConversationMessage.from_message(AIMessage(content=f"답 {i}"), conversation=conversation, user=user_a, status=status)
        for i, status in enumerate(["complete", "error", "complete", "streaming"])
    )
    for complete_only, limit in ((True, 1), (False, None)):
        rows = statements.window_rows(conversation.pk, user_a.pk, "", complete_only=complete_only, limit=limit)
        assert [(pk, tokens) for pk, tokens, _, _ in rows] == statements.window_ids(
            conversation.pk, user_a.pk, "", complete_only=complete_only, limit=limit
        )
        stored = {row.pk: (row.content, row.status) for row in ConversationMessage.objects.all()}
        assert [(content, status) for pk, _, content, status in rows] == [stored[pk] for pk, _, _, _ in rows]


def test_insert_messages_can_leave_out_a_duplicate_without_failing_the_transaction(user_a):
    conversation = Conversation.objects.create()

    def turn(key):
        return [
            ConversationMessage.from_message(HumanMessage(content="q"), conversation=conversation, user=user_a, idempotency_key=key),
            ConversationMessage.from_message(AIMessage(content=""), conversation=conversation, user=user_a, status="streaming"),
        ]

    with transaction.atomic():
        first = turn("k1")
        assert statements.insert_messages(first, skip_duplicates=True) == [first[0].pk, first[1].pk]
        again = turn("k1")
        ids = statements.insert_messages(again, skip_duplicates=True)
        assert len(ids) == 1 and again[0].pk is None and again[1].pk is None  # the reply row only
        statements.delete_messages(ids)
        assert ConversationMessage.objects.count() == 2  # the transaction is still usable
    assert sorted(ConversationMessage.objects.values_list("pk", flat=True)) == [first[0].pk, first[1].pk]


def test_insert_messages_uses_bulk_create_where_the_database_cannot_return_ids(user_a, monkeypatch):
    from django.db import connection

    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    conversation = Conversation.objects.create()
    rows = [ConversationMessage.from_message(HumanMessage(content=f"q{i}"), conversation=conversation, user=user_a) for i in range(2)]
    statements.insert_messages(rows)
    assert [m.content for m in ConversationMessage.objects.order_by("pk")] == [row.content for row in rows]
    keyed = [ConversationMessage.from_message(HumanMessage(content="k"), conversation=conversation, user=user_a, idempotency_key="k")]
    assert statements.insert_messages(keyed, skip_duplicates=True) is None  # the caller uses a savepoint
    assert ConversationMessage.objects.count() == 2
