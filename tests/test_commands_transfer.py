"""pyhub_ai_export and pyhub_ai_import FILE: a lossless round trip through JSON Lines."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from pyhub_ai import codec
from pyhub_ai.models import Conversation, ConversationMessage

T0 = datetime(2024, 5, 1, 9, 30, 15, 123456, tzinfo=timezone.utc)
TURN = uuid.UUID("0f2b5b0e-8f3e-4a55-9d7c-1a2b3c4d5e6f")
VISITOR = "a" * 64

PICTURE = HumanMessage(
    content=[
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
)
CALLS_TOOL = AIMessage(
    content="Let me check the weather.",
    id="run-42",
    tool_calls=[{"name": "get_weather", "args": {"city": "Seoul"}, "id": "call_1", "type": "tool_call"}],
    usage_metadata={"input_tokens": 139, "output_tokens": 14, "total_tokens": 153},
    response_metadata={"model_name": "gpt-4o-mini", "finish_reason": "tool_calls"},
)
TOOL_FAILED = ToolMessage(
    content="Weather service unavailable",
    tool_call_id="call_1",
    name="get_weather",
    artifact={"attempts": [1, 2, 3], "last_error": "timeout"},
    status="error",
)


def add(conversation, message, *, minutes=0, **fields):
    """Store ``message`` with ``fields`` (status, token_count, ...) and a fixed created_at."""
    row = ConversationMessage.from_message(message, conversation=conversation)
    for name, value in fields.items():
        setattr(row, name, value)
    row.save()
    ConversationMessage.objects.filter(pk=row.pk).update(created_at=T0 + timedelta(minutes=minutes))
    return row


def stamp(conversation, days):
    Conversation.objects.filter(pk=conversation.pk).update(
        created_at=T0 + timedelta(days=days), updated_at=T0 + timedelta(days=days, hours=5, microseconds=7)
    )


@pytest.fixture
def alice_chat(user_a):
    """alice's own conversation: every kind of message and status."""
    chat = Conversation.objects.create(
        user=user_a,
        title="Weather",
        session_id="alice-weather",
        metadata={"topic": "weather", "tags": ["seoul"]},
        expires_at=T0 + timedelta(days=30),
        input_tokens=139,
        output_tokens=14,
    )
    add(chat, SystemMessage("Start the conversation."), user=user_a, visible=False)
    add(chat, PICTURE, minutes=1, user=user_a, turn_id=TURN, idempotency_key="key-1", token_count=85)
    add(chat, CALLS_TOOL, minutes=2, user=user_a, turn_id=TURN, token_count=21)
    add(chat, TOOL_FAILED, minutes=3, user=user_a, turn_id=TURN, token_count=9)
    add(chat, AIMessage("The weather in Seo"), minutes=4, user=user_a, turn_id=TURN, status="error", token_count=8)
    stamp(chat, days=0)
    return chat


@pytest.fixture
def room(user_a, user_b):
    """An owner-less room: alice's and bob's threads and an anonymous visitor's."""
    room = Conversation.objects.create(title="Lobby")
    add(room, HumanMessage("alice in the lobby"), minutes=10, user=user_a)
    add(room, AIMessage("hello alice"), minutes=11, user=user_a)
    add(room, HumanMessage("bob in the lobby"), minutes=12, user=user_b)
    add(room, AIMessage("bye bo"), minutes=13, user=user_b, status="interrupted")
    add(room, HumanMessage("a visitor"), minutes=14, visitor_key=VISITOR)
    stamp(room, days=1)
    return room


@pytest.fixture
def bob_chat(user_b):
    chat = Conversation.objects.create(user=user_b, title="Bob's notes", session_id="bob-notes")
    add(chat, HumanMessage("bob alone"), user=user_b)
    return chat


def export(**options) -> str:
    out = StringIO()
    call_command("pyhub_ai_export", stdout=out, **options)
    return out.getvalue()


def records(text):
    return [json.loads(line) for line in text.splitlines()]


def import_text(text, *args, **options) -> str:
    out = StringIO()
    call_command("pyhub_ai_import", "-", *args, stdin=StringIO(text), stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def snapshot():
    """Everything stored, pks aside, comparable with ==; messages as decoded LangChain messages."""
    result = []
    for conversation in Conversation.objects.select_related("user").order_by("created_at"):
        rows = conversation.messages.select_related("user").order_by("pk")
        result.append(
            {
                "owner": conversation.user and conversation.user.username,
                **{
                    name: getattr(conversation, name)
                    for name in ("title", "session_id", "metadata", "created_at", "updated_at", "expires_at")
                },
                "tokens": (conversation.input_tokens, conversation.output_tokens),
                "messages": [
                    {
                        "user": row.user and row.user.username,
                        "message": row.message,
                        "content": row.content,
                        **{
                            name: getattr(row, name)
                            for name in (
                                "visitor_key", "role", "status", "visible", "turn_id", "idempotency_key",
                                "token_count", "created_at",
                            )
                        },
                    }
                    for row in rows
                ],
            }
        )
    return result


# -- The round trip ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_export_then_import_restores_every_conversation_and_message_exactly(alice_chat, room, bob_chat):
    before = snapshot()
    exported = export(all=True)
    Conversation.objects.all().delete()

    output = import_text(exported)

    assert snapshot() == before
    assert "Imported 3 conversations and 11 messages." in output


@pytest.mark.django_db
def test_round_trip_keeps_multimodal_tool_call_and_tool_error_messages_equal(alice_chat):
    exported = export(conversation=[alice_chat.pk])
    Conversation.objects.all().delete()

    import_text(exported)

    messages = [row.message for row in ConversationMessage.objects.order_by("pk")]
    assert messages[1:4] == [PICTURE, CALLS_TOOL, TOOL_FAILED]
    assert messages[2].usage_metadata["total_tokens"] == 153
    assert messages[3].artifact == {"attempts": [1, 2, 3], "last_error": "timeout"}
    assert messages[3].status == "error"


@pytest.mark.django_db
def test_import_creates_new_rows_beside_the_originals(room):
    original_pks = set(ConversationMessage.objects.values_list("pk", flat=True))

    import_text(export(conversation=[room.pk]))

    assert Conversation.objects.filter(title="Lobby").count() == 2
    copy = Conversation.objects.exclude(pk=room.pk).get()
    assert original_pks.isdisjoint(copy.messages.values_list("pk", flat=True))
    assert [row.message for row in copy.messages.order_by("pk")] == [row.message for row in room.messages.order_by("pk")]


@pytest.mark.django_db
def test_import_writes_in_batches(alice_chat, room):
    before = snapshot()
    exported = export(all=True)
    Conversation.objects.all().delete()

    with CaptureQueriesContext(connection) as queries:
        import_text(exported, batch_size=2)

    inserts = [q for q in queries if q["sql"].startswith("INSERT INTO") and "pyhub_ai_conversationmessage" in q["sql"]]
    assert len(inserts) == 5  # 10 messages, 2 a batch
    assert snapshot() == before


# -- What the export holds ---------------------------------------------------------------------


@pytest.mark.django_db
def test_export_starts_with_the_header_then_each_conversation_before_its_messages(alice_chat):
    lines = records(export(all=True))

    assert lines[0] == {"record": "header", "format": "pyhub_ai.export", "version": 1}
    assert lines[1]["record"] == "conversation"
    assert lines[1]["owner"] == "alice"
    assert lines[1]["created_at"] == "2024-05-01T09:30:15.123456+00:00"
    assert [line["record"] for line in lines[2:]] == ["message"] * 5
    assert lines[3]["content"] == codec.encode(PICTURE)
    assert {line["conversation"] for line in lines[2:]} == {alice_chat.pk}


@pytest.mark.django_db
def test_export_of_a_user_has_their_conversations_and_only_their_threads(alice_chat, room, bob_chat):
    lines = records(export(user="bob"))

    conversations = [line["title"] for line in lines if line["record"] == "conversation"]
    assert conversations == ["Lobby", "Bob's notes"]
    assert {line["user"] for line in lines if line["record"] == "message"} == {"bob"}
    assert len([line for line in lines if line["record"] == "message"]) == 3


@pytest.mark.django_db
def test_export_of_conversations_has_only_those(alice_chat, room, bob_chat):
    lines = records(export(conversation=[bob_chat.pk, alice_chat.pk]))

    assert [line["title"] for line in lines if line["record"] == "conversation"] == ["Weather", "Bob's notes"]


@pytest.mark.django_db
def test_export_of_all_has_every_thread(alice_chat, room, bob_chat):
    lines = records(export(all=True))

    assert len([line for line in lines if line["record"] == "conversation"]) == 3
    room_messages = [line for line in lines if line["record"] == "message" and line["conversation"] == room.pk]
    assert [(m["user"], m["visitor_key"]) for m in room_messages] == [
        ("alice", ""), ("alice", ""), ("bob", ""), ("bob", ""), (None, VISITOR)
    ]


@pytest.mark.django_db
def test_export_to_a_file(alice_chat, tmp_path):
    path = tmp_path / "export.jsonl"

    output = export(all=True, output=str(path))

    assert len(records(path.read_text(encoding="utf-8"))) == 7
    assert f"Wrote 7 lines to {path}." in output


@pytest.mark.parametrize(
    "options",
    [pytest.param({}, id="none"), pytest.param({"all": True, "user": "alice"}, id="two")],
)
@pytest.mark.django_db
def test_export_needs_exactly_one_selector(options):
    with pytest.raises(CommandError, match="exactly one of --conversation PK, --user USERNAME or --all"):
        export(**options)


@pytest.mark.django_db
def test_export_of_an_unknown_user_or_conversation_is_an_error(alice_chat):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        export(user="nobody")
    with pytest.raises(CommandError, match="No conversation with pk 999"):
        export(conversation=[alice_chat.pk, 999])


# -- Markdown ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_markdown_is_a_readable_transcript(alice_chat, room):
    text = export(all=True, format="markdown")

    assert "## Weather" in text
    assert "- Owner: alice" in text
    assert "**You**: What is in this picture?\n[image_url]" in text
    assert "**Assistant**: Let me check the weather." in text
    assert '- Tool call: `get_weather(city="Seoul")`' in text
    assert "**Tool (get_weather)**: Weather service unavailable _(error)_" in text
    assert "**Assistant**: The weather in Seo _(failed)_" in text
    assert "**Assistant**: bye bo _(interrupted)_" in text
    assert "### alice's thread" in text and "### bob's thread" in text and "### Anonymous visitor" in text


@pytest.mark.django_db
def test_markdown_leaves_out_hidden_messages_and_never_shows_raw_json(alice_chat):
    text = export(all=True, format="markdown")

    assert "Start the conversation." not in text
    for raw in ('"v"', '"type"', '"data"', "{", "tool_call_id"):
        assert raw not in text


# -- Refusals: nothing is written --------------------------------------------------------------


def _bad_type(record):
    record["content"]["type"] = "robot"
    return json.dumps(record)


def _bad_status(record):
    record["status"] = "lost"
    return json.dumps(record)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda record: json.dumps(record)[:-5], id="invalid JSON"),
        pytest.param(_bad_type, id="unknown message type"),
        pytest.param(_bad_status, id="bad status"),
    ],
)
@pytest.mark.django_db
def test_a_corrupt_line_makes_the_import_fail_before_writing_anything(alice_chat, room, corrupt):
    lines = export(all=True).splitlines()
    Conversation.objects.all().delete()
    index = next(i for i, line in enumerate(lines) if "hello alice" in line)
    lines[index] = corrupt(json.loads(lines[index]))

    with pytest.raises(CommandError, match=f"Nothing was imported. Line {index + 1}:"):
        import_text("\n".join(lines))

    assert Conversation.objects.count() == 0
    assert ConversationMessage.objects.count() == 0


@pytest.mark.django_db
def test_a_file_without_the_header_is_refused():
    with pytest.raises(CommandError, match="expected the header"):
        import_text('{"record": "conversation"}\n')


@pytest.mark.django_db
def test_missing_users_are_listed_and_nothing_is_written(alice_chat, room, user_b):
    exported = export(all=True)
    Conversation.objects.all().delete()
    user_b.delete()

    with pytest.raises(CommandError, match="These users do not exist: bob. .*--missing-users=skip-owner"):
        import_text(exported)

    assert Conversation.objects.count() == 0


@pytest.mark.django_db
def test_skip_owner_imports_what_belonged_to_missing_users_without_a_user(alice_chat, bob_chat, user_b):
    exported = export(all=True)
    Conversation.objects.all().delete()
    user_b.delete()

    import_text(exported, missing_users="skip-owner")

    notes = Conversation.objects.get(title="Bob's notes")
    assert notes.user is None
    assert [(row.user, row.message.content) for row in notes.messages.all()] == [(None, "bob alone")]
    assert Conversation.objects.get(title="Weather").user.username == "alice"


@pytest.mark.django_db
def test_a_session_id_that_exists_is_refused_without_replace(alice_chat):
    with pytest.raises(CommandError, match="session ids exist already: alice-weather. Pass --replace"):
        import_text(export(all=True))

    assert Conversation.objects.count() == 1


@pytest.mark.django_db
def test_replace_deletes_the_existing_conversation_first(alice_chat):
    before = snapshot()
    exported = export(all=True)
    add(alice_chat, HumanMessage("added after the export"), user=alice_chat.user)

    output = import_text(exported, replace=True)

    assert snapshot() == before
    assert Conversation.objects.get().pk != alice_chat.pk
    assert "replacing 1 existing conversations" in output


@pytest.mark.django_db
def test_import_reads_a_file(alice_chat, tmp_path):
    path = tmp_path / "export.jsonl"
    export(all=True, output=str(path))
    Conversation.objects.all().delete()

    call_command("pyhub_ai_import", str(path), stdout=StringIO())

    assert ConversationMessage.objects.count() == 5


@pytest.mark.django_db
def test_import_needs_exactly_one_source():
    with pytest.raises(CommandError, match="exactly one of FILE"):
        call_command("pyhub_ai_import", stdout=StringIO())
    with pytest.raises(CommandError, match="exactly one of FILE"):
        call_command("pyhub_ai_import", "-", upgrade_legacy_rows=True, stdout=StringIO())


# -- Branches (pyhub_ai.branches) ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_branched_thread_round_trips_with_its_tree_and_the_branch_it_shows(user_a):
    from pyhub_ai.history import DjangoChatMessageHistory
    from pyhub_ai.models import ThreadBranch

    chat = Conversation.objects.create(user=user_a, title="Edited", session_id="edited")
    history = DjangoChatMessageHistory(conversation=chat, user=user_a)
    history.add_messages([HumanMessage("one"), AIMessage("answer one"), HumanMessage("two"), AIMessage("answer two")])
    two = chat.messages.get(content__data__content="two")
    history.finish_turn(history.start_turn(HumanMessage("two, edited"), edit_of=two.pk), AIMessage("answer edited"))
    history.switch_branch(two.pk)  # shows the first version
    exported = export(all=True)
    Conversation.objects.all().delete()

    import_text(exported)

    imported = Conversation.objects.get(session_id="edited")
    again = DjangoChatMessageHistory(conversation=imported, user=user_a)
    assert [m.text for m in again.messages] == ["one", "answer one", "two", "answer two"]
    rows, _ = async_to_sync(again.aget_page)()
    assert [len(v) for v in again.get_versions(rows).values()] == [2]  # "two" has its edited version
    assert ThreadBranch.objects.filter(conversation=imported).count() == 1


@pytest.mark.django_db
def test_an_import_whose_parent_is_not_an_earlier_message_of_the_conversation_is_refused(alice_chat):
    lines = records(export(all=True))
    messages = [line for line in lines if line["record"] == "message"]
    messages[1]["parent"] = messages[-1]["id"]  # a later message
    text = "\n".join(json.dumps(line) for line in lines)

    with pytest.raises(CommandError, match="is not an earlier message of its conversation"):
        import_text(text)
    assert Conversation.objects.count() == 1
