"""Database errors while storing a turn are reported to the client and the log, never swallowed.

The client is told exactly what was stored: a human message it saw echoed (with its id) is in
the database; a reply it never saw end with ``stream_end`` is not shown as complete. The
client's error frame carries no database text; the log carries all of it. The room works again
as soon as the database does.
"""
from __future__ import annotations

import json
import logging

import pytest
from django.db import DatabaseError

from pyhub_ai.history import DjangoChatMessageHistory
from pyhub_ai.models import Conversation, ConversationMessage

from .conftest import fake_model
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)

DB_DETAIL = "DB-DETAIL-disk I/O error on table pyhub_ai_conversationmessage"


def failing(*args, **kwargs):
    raise DatabaseError(DB_DETAIL)


async def failing_async(*args, **kwargs):
    failing()


@pytest.fixture
async def room(user_a, use_model, caplog):
    caplog.set_level(logging.DEBUG, logger="pyhub_ai")
    use_model(fake_model("first reply", "second reply", "third reply"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    yield communicator, conversation
    await communicator.disconnect()


def rows_of(conversation):
    return ConversationMessage.objects.filter(conversation=conversation).order_by("pk")


async def snapshot(conversation) -> list[tuple]:
    return [(row.pk, row.role, row.status, row.message.text) async for row in rows_of(conversation)]


async def next_turn_works(communicator, conversation, text: str = "try again") -> None:
    await communicator.send_json_to({"type": "user_message", "text": text})
    frames = await receive_until(communicator, "stream_end")
    assert frames[0]["type"] == "message" and frames[0]["message"]["text"] == text
    stored = await ConversationMessage.objects.aget(pk=frames[-1]["message"]["id"])
    assert (stored.status, stored.message.text) == ("complete", frames[-1]["message"]["text"])


async def test_a_database_error_storing_the_users_message_is_reported_and_nothing_is_stored(room, monkeypatch, caplog):
    communicator, conversation = room
    monkeypatch.setattr(DjangoChatMessageHistory, "start_turn", failing)

    await communicator.send_json_to({"type": "user_message", "text": "will this be saved?"})

    error = await communicator.receive_json_from(timeout=3)
    assert error["type"] == "error" and error["code"] == "storage_error"
    assert DB_DETAIL not in json.dumps(error) and "DatabaseError" not in json.dumps(error)
    assert await communicator.receive_nothing(timeout=0.2)  # no echo: the client was told nothing was stored
    assert await snapshot(conversation) == []
    assert DB_DETAIL in caplog.text
    assert any(r.levelno >= logging.ERROR and r.name.startswith("pyhub_ai") for r in caplog.records)

    monkeypatch.undo()
    await next_turn_works(communicator, conversation)
    assert [role for _, role, _, _ in await snapshot(conversation)] == ["human", "ai"]


async def test_a_database_error_storing_the_reply_keeps_the_echoed_message_and_never_claims_the_reply(
    room, monkeypatch, caplog, user_a
):
    communicator, conversation = room
    monkeypatch.setattr(DjangoChatMessageHistory, "afinish_turn", failing_async)

    await communicator.send_json_to({"type": "user_message", "text": "keep me"})

    frames = await receive_until(communicator, "error")
    echo, start, error = frames[0], frames[1], frames[-1]
    assert echo["type"] == "message" and start["type"] == "stream_start"
    assert [f["type"] for f in frames[2:-1]] == ["stream_delta"] * (len(frames) - 3)
    assert "stream_end" not in [f["type"] for f in frames]
    assert error["code"] == "storage_error" and error["turn_id"] == start["turn_id"]
    assert DB_DETAIL not in json.dumps(frames)
    assert DB_DETAIL in caplog.text

    # What the client was told is stored, is stored: the echoed human message, with its id.
    rows = await snapshot(conversation)
    assert rows[0] == (echo["message"]["id"], "human", "complete", "keep me")
    # The reply was never confirmed, and the database does not claim it is complete.
    assert [(pk, role) for pk, role, _, _ in rows[1:]] == [(start["message_id"], "ai")]
    assert rows[1][2] != "complete"

    monkeypatch.undo()
    # A new page load shows the same: the message, and the reply as not complete.
    other_tab = await connect(conversation.pk, user_a, route="plain")
    history = (await receive_until(other_tab, "history"))[-1]
    assert [(m["id"], m["role"], m["status"]) for m in history["messages"]] == [
        (echo["message"]["id"], "human", "complete"),
        (start["message_id"], "ai", "interrupted"),
    ]
    await other_tab.disconnect()

    await next_turn_works(communicator, conversation)
    statuses = [(role, status) for _, role, status, _ in await snapshot(conversation)]
    assert statuses == [("human", "complete"), ("ai", "interrupted"), ("human", "complete"), ("ai", "complete")]


async def test_a_database_error_reading_the_history_is_reported_and_nothing_is_stored(room, monkeypatch, caplog):
    communicator, conversation = room
    monkeypatch.setattr(DjangoChatMessageHistory, "_window", failing)  # the window a turn reads (its branch's, or the newest rows)

    await communicator.send_json_to({"type": "user_message", "text": "hello"})

    error = await communicator.receive_json_from(timeout=3)
    assert error["code"] == "storage_error" and DB_DETAIL not in json.dumps(error)
    assert await snapshot(conversation) == []
    assert DB_DETAIL in caplog.text
    monkeypatch.undo()
    await next_turn_works(communicator, conversation)


async def test_a_database_error_saving_the_streaming_reply_is_reported_as_storage_error(room, monkeypatch, settings, caplog):
    communicator, conversation = room
    settings.PYHUB_AI_STREAM_SAVE_INTERVAL = 0  # save after every token
    monkeypatch.setattr(DjangoChatMessageHistory, "asave_partial", failing_async)

    await communicator.send_json_to({"type": "user_message", "text": "long answer please"})

    frames = await receive_until(communicator, "error")
    assert frames[0]["type"] == "message"
    assert frames[-1]["code"] == "storage_error"
    assert DB_DETAIL not in json.dumps(frames) and DB_DETAIL in caplog.text


async def test_a_prompt_hook_that_raises_ends_the_turn_with_llm_error_and_the_room_stays_usable(room, monkeypatch, caplog):
    from pyhub_ai.mixins.llm import LLMMixin

    communicator, conversation = room

    def broken_prompt(*args, **kwargs):
        raise KeyError("PROMPT-DETAIL")

    monkeypatch.setattr(LLMMixin, "get_llm_prompt_messages", broken_prompt)

    await communicator.send_json_to({"type": "user_message", "text": "hello"})

    frames = await receive_until(communicator, "error")
    assert [f["type"] for f in frames] == ["message", "stream_start", "error"]
    assert frames[-1]["code"] == "llm_error" and "PROMPT-DETAIL" not in json.dumps(frames)
    assert "PROMPT-DETAIL" in caplog.text
    assert [(role, status, text) for _, role, status, text in await snapshot(conversation)] == [
        ("human", "complete", "hello"), ("ai", "error", "")
    ]
    monkeypatch.undo()
    await next_turn_works(communicator, conversation)


async def test_an_unexpected_exception_in_a_turn_is_logged_and_answered_with_server_error(room, monkeypatch, caplog):
    from pyhub_ai.consumers import BaseAgentChatConsumer

    communicator, conversation = room

    async def broken(*args, **kwargs):
        raise RuntimeError("BUG-DETAIL")

    monkeypatch.setattr(BaseAgentChatConsumer, "run_locked_turn", broken)
    await communicator.send_json_to({"type": "user_message", "text": "hello"})

    error = await communicator.receive_json_from(timeout=3)
    assert error["type"] == "error" and error["code"] == "server_error" and "BUG-DETAIL" not in json.dumps(error)
    assert "BUG-DETAIL" in caplog.text
    monkeypatch.undo()
    await next_turn_works(communicator, conversation)
