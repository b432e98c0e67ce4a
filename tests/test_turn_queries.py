"""The SQL of one chat turn does not grow with the thread: same queries, and every read is bounded.

A turn is driven through ``WebsocketCommunicator`` like a browser would. Its queries run in the
async ORM's worker thread (asgiref's thread-sensitive executor), on that thread's connection, so
``CaptureQueriesContext`` is entered, exited and read in that thread (``WorkerThreadQueries``);
a capture on the main thread's connection would see nothing. bench/history_scaling.py measures
the same turn's time with up to 100,000 stored messages.
"""
from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test.utils import CaptureQueriesContext
from langchain_core.messages import AIMessage, HumanMessage

from pyhub_ai.models import Conversation, ConversationMessage

from .conftest import fake_model
from .routing import application

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE_TABLE = "pyhub_ai_conversationmessage"


class WorkerThreadQueries:
    """``CaptureQueriesContext`` on the connection of the async ORM's worker thread."""

    async def __aenter__(self) -> WorkerThreadQueries:
        self._context = CaptureQueriesContext(connection)
        await sync_to_async(self._context.__enter__)()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await sync_to_async(self._context.__exit__)(*exc_info)
        self.queries: list[str] = await sync_to_async(lambda: [q["sql"] for q in self._context.captured_queries])()


async def stored_thread(user, size: int) -> Conversation:
    """A conversation of ``user`` with ``size`` alternating human/AI messages already stored."""
    conversation = await Conversation.objects.acreate(user=user)
    rows = [
        ConversationMessage.from_message(
            HumanMessage(content=f"question {index}") if index % 2 == 0 else AIMessage(content=f"answer {index}"),
            conversation=conversation,
            user=user,
        )
        for index in range(size)
    ]
    await ConversationMessage.objects.abulk_create(rows, batch_size=500)
    return conversation


async def receive_until(communicator, frame_type: str) -> dict:
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        assert frame["type"] != "error", frame
        if frame["type"] == frame_type:
            return frame


async def queries_of_one_turn(user, conversation) -> list[str]:
    """The SQL of one user turn: from sending the message until the turn's task has ended
    (``disconnect()`` waits for it). Connecting is not counted."""
    communicator = WebsocketCommunicator(application, f"/ws/plain/{conversation.pk}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    await receive_until(communicator, "history")
    async with WorkerThreadQueries() as captured:
        await communicator.send_json_to({"type": "user_message", "text": "one more question"})
        await receive_until(communicator, "stream_end")
        await communicator.disconnect()
    return captured.queries


def shape(sql: str) -> str:
    """The query without its values, to compare turns on different threads."""
    sql = re.sub(r"'(?:[^']|'')*'", "?", sql)
    sql = re.sub(r'"s\d+_x\d+"', "?", sql)  # savepoint names
    return re.sub(r"\b\d+\b", "?", sql)


def unbounded_reads_of_the_thread(queries: list[str]) -> list[str]:
    """SELECTs on the message table without a LIMIT."""
    return [
        sql
        for sql in queries
        if sql.lstrip().upper().startswith("SELECT") and MESSAGE_TABLE in sql and not re.search(r"\bLIMIT\b", sql, re.I)
    ]


async def test_one_turn_runs_the_same_bounded_queries_with_10_and_1000_stored_messages(user_a, use_model):
    use_model(fake_model("short answer", "short answer"))
    small = await stored_thread(user_a, 10)
    large = await stored_thread(user_a, 1_000)

    small_queries = await queries_of_one_turn(user_a, small)
    large_queries = await queries_of_one_turn(user_a, large)

    # The capture saw the turn (not an idle connection): the human message and the reply were stored.
    for queries in (small_queries, large_queries):
        assert any(sql.lstrip().upper().startswith("INSERT") and MESSAGE_TABLE in sql for sql in queries), queries
        assert any(MESSAGE_TABLE in sql and sql.lstrip().upper().startswith("SELECT") for sql in queries), queries
    assert len(large_queries) == len(small_queries), (small_queries, large_queries)
    assert [shape(sql) for sql in large_queries] == [shape(sql) for sql in small_queries]
    assert unbounded_reads_of_the_thread(small_queries + large_queries) == []
    assert await ConversationMessage.objects.filter(conversation=large).acount() == 1_002
