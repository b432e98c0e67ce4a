"""``DjangoSaver`` with real LangGraph graphs: each message is stored once, as a
``ConversationMessage`` row of the thread's conversation, and a checkpoint refers to the rows."""
from __future__ import annotations

import json

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, ToolMessage
from langgraph.checkpoint.base import copy_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.graph import START, MessagesState, StateGraph

from pyhub_ai import dbthread, statements
from pyhub_ai.checkpoint import DjangoSaver, conversation_thread_id
from pyhub_ai.history import DjangoChatMessageHistory
from pyhub_ai.models import Checkpoint, CheckpointBlob, Conversation, ConversationMessage, GraphThread

pytestmark = pytest.mark.django_db(transaction=True)


def echo_graph(saver: DjangoSaver):
    """One node answering "echo: <last message>"."""

    def reply(state: MessagesState):
        return {"messages": [AIMessage(content=f"echo: {state['messages'][-1].content}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    return builder.compile(checkpointer=saver)


def config_of(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id}}


def contents(messages) -> list[str]:
    return [message.content for message in messages]


def test_each_message_is_one_row_of_the_threads_conversation():
    graph = echo_graph(DjangoSaver())
    for text in ("one", "two", "three"):
        graph.invoke({"messages": [HumanMessage(content=text)]}, config_of("room-1"))

    conversation = Conversation.objects.get(session_id="room-1")
    rows = list(conversation.messages.order_by("pk"))
    assert [row.role for row in rows] == ["human", "ai"] * 3
    assert contents(row.message for row in rows) == ["one", "echo: one", "two", "echo: two", "three", "echo: three"]
    assert contents(graph.get_state(config_of("room-1")).values["messages"]) == contents(row.message for row in rows)


async def test_async_turns_store_the_same_rows():
    graph = echo_graph(DjangoSaver())
    for text in ("one", "two"):
        await graph.ainvoke({"messages": [HumanMessage(content=text)]}, config_of("room-async"))

    state = await graph.aget_state(config_of("room-async"))
    assert contents(state.values["messages"]) == ["one", "echo: one", "two", "echo: two"]
    assert await ConversationMessage.objects.filter(conversation__session_id="room-async").acount() == 4


def test_the_stored_message_list_does_not_grow_with_the_thread():
    graph = echo_graph(DjangoSaver())
    for turn in range(12):
        graph.invoke({"messages": [HumanMessage(content=f"message {turn}")]}, config_of("long"))

    rows = list(ConversationMessage.objects.filter(conversation__session_id="long").values_list("pk", flat=True))
    latest = Checkpoint.objects.order_by("-checkpoint_id").first()
    assert len(rows) == 24
    # The runs before the last put merged into one, and one run for the message it added.
    assert latest.message_runs == {"messages": [[min(rows), max(rows) - 1, 23], [max(rows), max(rows), 1]]}
    assert not CheckpointBlob.objects.filter(channel="messages").exists()


def test_new_rows_are_one_run_when_their_ids_follow_each_other():
    assert statements.new_rows_runs([7]) == [(7, 7, 1)]
    assert statements.new_rows_runs([7, 8, 9]) == [(7, 9, 3)]
    assert statements.new_rows_runs([7, 9, 10]) == [(7, 7, 1), (9, 9, 1), (10, 10, 1)]  # another row may be 8


def test_a_step_that_adds_several_messages_stores_them_as_runs_merged_by_the_next_put():
    def tools(state: MessagesState):
        return {"messages": [AIMessage(content="calling"), ToolMessage(content="42", tool_call_id="call-1"), AIMessage(content="done")]}

    builder = StateGraph(MessagesState)
    builder.add_node("tools", tools)
    builder.add_edge(START, "tools")
    graph = builder.compile(checkpointer=DjangoSaver())
    graph.invoke({"messages": [HumanMessage(content="one")]}, config_of("several"))
    rows = list(ConversationMessage.objects.filter(conversation__session_id="several").order_by("pk").values_list("pk", flat=True))
    first = Checkpoint.objects.order_by("-checkpoint_id").first().message_runs["messages"]

    graph.invoke({"messages": [HumanMessage(content="two")]}, config_of("several"))
    rows_after = list(ConversationMessage.objects.filter(conversation__session_id="several").order_by("pk").values_list("pk", flat=True))
    after = Checkpoint.objects.order_by("-checkpoint_id").first().message_runs["messages"]

    assert first == [[rows[0], rows[0], 1], [rows[1], rows[3], 3]]  # the input's row, then the step's three rows
    assert after == [[rows[0], rows_after[-4], 5], [rows_after[-3], rows_after[-1], 3]]  # merged, then the new step's
    expected = ["one", "calling", "42", "done", "two", "calling", "42", "done"]
    assert contents(graph.get_state(config_of("several")).values["messages"]) == expected
    assert contents(builder.compile(checkpointer=DjangoSaver()).get_state(config_of("several")).values["messages"]) == expected


def _put_one_more_message(saver: DjangoSaver, thread_id: str, text: str, step: int, before_put=lambda: None) -> None:
    """``saver.put`` (in this thread, on its connection) of the latest checkpoint plus a message."""
    latest = saver.get_tuple(config_of(thread_id))
    before_put()
    checkpoint = copy_checkpoint(latest.checkpoint)
    checkpoint["id"] = str(uuid6(clock_seq=step))
    checkpoint["channel_values"]["messages"] = [*checkpoint["channel_values"]["messages"], HumanMessage(content=text)]
    version = f"{step:032}.0"
    checkpoint["channel_versions"]["messages"] = version
    saver.put(latest.config, checkpoint, {"source": "update", "step": step}, {"messages": version})


def test_a_put_into_a_thread_another_process_deleted_leaves_nothing_behind_and_starts_the_thread_again():
    saver = DjangoSaver()
    echo_graph(saver).invoke({"messages": [HumanMessage(content="one")]}, config_of("gone"))

    # Another process deletes the thread after the saver read it. The first try fails on the
    # deleted rows (SQLite: at COMMIT) and is rolled back; the second stores the list in a new
    # thread.
    _put_one_more_message(saver, "gone", "two", 99, before_put=lambda: DjangoSaver().delete_thread("gone"))

    assert contents(echo_graph(DjangoSaver()).get_state(config_of("gone")).values["messages"]) == ["one", "echo: one", "two"]
    assert ConversationMessage.objects.filter(content__data__content="two").count() == 1
    assert GraphThread.objects.filter(thread_id="gone").count() == 1


def test_a_message_put_shows_its_statements_to_whoever_watches_djangos_cursors():
    saver = DjangoSaver()
    echo_graph(saver).invoke({"messages": [HumanMessage(content="one")]}, config_of("watched"))
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with CaptureQueriesContext(connection) as queries:
        _put_one_more_message(saver, "watched", "two", 90)
    with connection.execute_wrapper(wrapper):
        _put_one_more_message(saver, "watched", "three", 91)

    message_table, checkpoint_table = ConversationMessage._meta.db_table, Checkpoint._meta.db_table
    for statements_seen in ([query["sql"] for query in queries.captured_queries], seen):
        inserts = [sql for sql in statements_seen if sql.lstrip().upper().startswith(("INSERT", "WITH"))]
        assert any(message_table in sql for sql in inserts)
        assert any(checkpoint_table in sql for sql in inserts)
    assert contents(echo_graph(DjangoSaver()).get_state(config_of("watched")).values["messages"]) == ["one", "echo: one", "two", "three"]


def test_a_checkpoint_that_adds_no_message_is_one_statement():
    saver = DjangoSaver()
    graph = echo_graph(saver)
    graph.invoke({"messages": [HumanMessage(content="one")]}, config_of("lean"))
    latest = saver.get_tuple(config_of("lean"))
    checkpoint = copy_checkpoint(latest.checkpoint)
    checkpoint["id"] = str(uuid6(clock_seq=-2))

    with CaptureQueriesContext(connection) as queries:
        saver.put(latest.config, checkpoint, {"source": "update", "step": 9}, {})

    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["INSERT"]
    assert saver.get_tuple(config_of("lean")).checkpoint["id"] == checkpoint["id"]
    assert contents(echo_graph(DjangoSaver()).get_state(config_of("lean")).values["messages"]) == ["one", "echo: one"]


def test_a_new_saver_stores_an_unchanged_message_list_without_storing_its_messages_again():
    graph = echo_graph(DjangoSaver())
    graph.invoke({"messages": [HumanMessage(content="one")]}, config_of("unchanged"))
    latest = DjangoSaver().get_tuple(config_of("unchanged"))
    checkpoint = copy_checkpoint(latest.checkpoint)
    checkpoint["id"] = str(uuid6(clock_seq=-2))

    DjangoSaver().put(latest.config, checkpoint, {"source": "update", "step": 9}, {})  # nothing in memory

    assert contents(echo_graph(DjangoSaver()).get_state(config_of("unchanged")).values["messages"]) == ["one", "echo: one"]
    assert ConversationMessage.objects.filter(conversation__session_id="unchanged").count() == 2


def test_reading_a_turns_checkpoint_is_one_statement():
    saver = DjangoSaver()
    graph = echo_graph(saver)
    graph.invoke({"messages": [HumanMessage(content="one")]}, config_of("one-read"))

    with CaptureQueriesContext(connection) as queries:
        latest = saver.get_tuple(config_of("one-read"))

    assert len(queries.captured_queries) == 1
    assert contents(latest.checkpoint["channel_values"]["messages"]) == ["one", "echo: one"]
    assert "pyhub_ai_blob_channels" not in latest.checkpoint


def test_checkpoints_stored_with_their_messages_in_a_blob_are_still_read():
    # Before Checkpoint.message_runs, a message list was a blob of type "pyhub_ai.messages".
    echo_graph(DjangoSaver()).invoke({"messages": [HumanMessage(content="one")]}, config_of("older"))
    for row in Checkpoint.objects.all():
        if row.message_runs:
            version = row.checkpoint["channel_versions"]["messages"]
            blob = json.dumps({"runs": row.message_runs["messages"]}).encode()
            CheckpointBlob.objects.get_or_create(
                thread_id=row.thread_id, checkpoint_ns=row.checkpoint_ns, channel="messages", version=str(version),
                defaults={"type": "pyhub_ai.messages", "blob": blob},
            )  # fmt: skip
        row.checkpoint.pop("pyhub_ai_blob_channels", None)  # nor a list of the channels with blobs
        row.message_runs = {}
        row.save(update_fields=["checkpoint", "message_runs"])

    assert contents(DjangoSaver().get_tuple(config_of("older")).checkpoint["channel_values"]["messages"]) == ["one", "echo: one"]
    graph = echo_graph(DjangoSaver())  # a new process: nothing in memory
    assert contents(graph.get_state(config_of("older")).values["messages"]) == ["one", "echo: one"]
    graph.invoke({"messages": [HumanMessage(content="two")]}, config_of("older"))
    assert contents(graph.get_state(config_of("older")).values["messages"]) == ["one", "echo: one", "two", "echo: two"]
    assert ConversationMessage.objects.filter(conversation__session_id="older").count() == 4


def test_a_new_saver_continues_a_thread_without_storing_its_messages_again():
    echo_graph(DjangoSaver()).invoke({"messages": [HumanMessage(content="one")]}, config_of("restarted"))

    graph = echo_graph(DjangoSaver())  # a new process: nothing in memory
    graph.invoke({"messages": [HumanMessage(content="two")]}, config_of("restarted"))

    rows = ConversationMessage.objects.filter(conversation__session_id="restarted").order_by("pk")
    assert contents(row.message for row in rows) == ["one", "echo: one", "two", "echo: two"]


def test_without_a_cache_every_read_comes_from_the_rows():
    graph = echo_graph(DjangoSaver(cache_threads=0))
    for text in ("one", "two"):
        graph.invoke({"messages": [HumanMessage(content=text)]}, config_of("uncached"))

    assert contents(graph.get_state(config_of("uncached")).values["messages"]) == ["one", "echo: one", "two", "echo: two"]
    assert ConversationMessage.objects.filter(conversation__session_id="uncached").count() == 4


def test_a_replaced_message_is_a_new_row_and_older_checkpoints_keep_the_old_one():
    graph = echo_graph(DjangoSaver())
    config = config_of("edited")
    graph.invoke({"messages": [HumanMessage(content="one", id="h1")]}, config)
    graph.invoke({"messages": [HumanMessage(content="two", id="h2")]}, config)
    before = graph.get_state(config)

    graph.update_state(config, {"messages": [HumanMessage(content="ONE", id="h1"), RemoveMessage(id="h2")]})

    assert contents(graph.get_state(config).values["messages"]) == ["ONE", "echo: one", "echo: two"]
    assert contents(graph.get_state(before.config).values["messages"]) == ["one", "echo: one", "two", "echo: two"]
    assert ConversationMessage.objects.filter(conversation__session_id="edited").count() == 5


def test_a_fork_from_an_older_checkpoint_reads_back_its_own_branch():
    graph = echo_graph(DjangoSaver())
    config = config_of("forked")
    graph.invoke({"messages": [HumanMessage(content="one")]}, config)
    after_one = graph.get_state(config).config
    graph.invoke({"messages": [HumanMessage(content="two")]}, config)

    graph.invoke({"messages": [HumanMessage(content="other")]}, after_one)

    assert contents(graph.get_state(config).values["messages"]) == ["one", "echo: one", "other", "echo: other"]
    fresh = echo_graph(DjangoSaver())
    assert contents(fresh.get_state(config).values["messages"]) == ["one", "echo: one", "other", "echo: other"]


def test_a_conversation_thread_id_stores_in_that_users_thread(user_a, user_b):
    room = Conversation.objects.create(title="shared room")
    graph = echo_graph(DjangoSaver())
    graph.invoke({"messages": [HumanMessage(content="from alice")]}, config_of(conversation_thread_id(room, user_a)))
    graph.invoke({"messages": [HumanMessage(content="from bob")]}, config_of(conversation_thread_id(room, user_b)))

    alice = DjangoChatMessageHistory(conversation=room, user=user_a)
    assert contents(alice.messages) == ["from alice", "echo: from alice"]
    assert GraphThread.objects.get(thread_id=conversation_thread_id(room, user_b)).user == user_b


def test_a_thread_id_of_a_missing_conversation_is_refused():
    graph = echo_graph(DjangoSaver())
    with pytest.raises(ValueError, match="does not exist"):
        graph.invoke({"messages": [HumanMessage(content="hi")]}, config_of(conversation_thread_id(999_999)))


def test_a_message_the_codec_cannot_store_keeps_the_list_serialized():
    saver = DjangoSaver()
    graph = echo_graph(saver)
    odd = ToolMessage(content="rows", tool_call_id="call_1", artifact={1, 2, 3})  # a set: not JSON
    graph.invoke({"messages": [HumanMessage(content="hi"), AIMessage(content="", tool_calls=[{"name": "t", "args": {}, "id": "call_1"}]), odd]}, config_of("odd"))

    messages = echo_graph(DjangoSaver()).get_state(config_of("odd")).values["messages"]
    assert messages[2].artifact == {1, 2, 3}
    assert CheckpointBlob.objects.filter(channel="messages").exclude(type="pyhub_ai.messages").exists()


def test_copy_thread_copies_the_messages_to_the_new_threads_conversation():
    saver = DjangoSaver()
    graph = echo_graph(saver)
    graph.invoke({"messages": [HumanMessage(content="one")]}, config_of("source"))

    saver.copy_thread("source", "target")
    graph.invoke({"messages": [HumanMessage(content="two")]}, config_of("target"))

    target_rows = ConversationMessage.objects.filter(conversation__session_id="target").order_by("pk")
    assert contents(row.message for row in target_rows) == ["one", "echo: one", "two", "echo: two"]
    assert ConversationMessage.objects.filter(conversation__session_id="source").count() == 2


def test_delete_thread_deletes_its_messages():
    saver = DjangoSaver()
    echo_graph(saver).invoke({"messages": [HumanMessage(content="one")]}, config_of("gone"))

    saver.delete_thread("gone")

    assert not ConversationMessage.objects.filter(conversation__session_id="gone").exists()
    assert saver.get_tuple(config_of("gone")) is None


def test_prune_keeps_the_messages_of_the_conversation():
    saver = DjangoSaver()
    graph = echo_graph(saver)
    for text in ("one", "two"):
        graph.invoke({"messages": [HumanMessage(content=text)]}, config_of("pruned"))

    saver.prune(["pruned"], strategy="keep_latest")

    assert contents(echo_graph(DjangoSaver()).get_state(config_of("pruned")).values["messages"]) == [
        "one", "echo: one", "two", "echo: two",
    ]  # fmt: skip
    assert ConversationMessage.objects.filter(conversation__session_id="pruned").count() == 4


def test_deleting_the_conversation_deletes_its_checkpoints():
    saver = DjangoSaver()
    echo_graph(saver).invoke({"messages": [HumanMessage(content="one")]}, config_of("cascade"))

    Conversation.objects.get(session_id="cascade").delete()

    assert saver.get_tuple(config_of("cascade")) is None
    assert not CheckpointBlob.objects.exists()


def test_rows_stored_in_the_thread_by_others_do_not_join_the_graphs_messages():
    saver = DjangoSaver()
    graph = echo_graph(saver)
    graph.invoke({"messages": [HumanMessage(content="one")]}, config_of("shared-thread"))
    DjangoChatMessageHistory(session_id="shared-thread").add_messages([AIMessage(content="written by a plain chain")])

    graph.invoke({"messages": [HumanMessage(content="two")]}, config_of("shared-thread"))

    expected = ["one", "echo: one", "two", "echo: two"]
    assert contents(graph.get_state(config_of("shared-thread")).values["messages"]) == expected
    assert contents(echo_graph(DjangoSaver()).get_state(config_of("shared-thread")).values["messages"]) == expected
    assert ConversationMessage.objects.filter(conversation__session_id="shared-thread").count() == 5


def test_threads_written_in_turn_keep_a_short_message_list():
    # Two threads' turns alternate, so a thread's new rows never follow its previous ones.
    graph = echo_graph(DjangoSaver())
    for turn in range(30):
        for thread_id in ("left", "right"):
            graph.invoke({"messages": [HumanMessage(content=f"{turn} in {thread_id}")]}, config_of(thread_id))

    for thread_id in ("left", "right"):
        latest = Checkpoint.objects.filter(thread__thread_id=thread_id).order_by("-checkpoint_id").first()
        assert len(latest.message_runs["messages"]) <= 9
        expected = [text for turn in range(30) for text in (f"{turn} in {thread_id}", f"echo: {turn} in {thread_id}")]
        assert contents(echo_graph(DjangoSaver()).get_state(config_of(thread_id)).values["messages"]) == expected


def test_rows_stored_by_others_between_many_turns_stay_out_of_the_graphs_messages():
    graph = echo_graph(DjangoSaver())
    history = DjangoChatMessageHistory(session_id="busy-thread")
    expected = []
    for turn in range(20):
        graph.invoke({"messages": [HumanMessage(content=f"turn {turn}")]}, config_of("busy-thread"))
        history.add_messages([AIMessage(content=f"aside {turn}")])
        expected += [f"turn {turn}", f"echo: turn {turn}"]

    assert contents(graph.get_state(config_of("busy-thread")).values["messages"]) == expected
    assert contents(echo_graph(DjangoSaver()).get_state(config_of("busy-thread")).values["messages"]) == expected


def test_a_conversation_stored_before_continues_as_a_graph_thread_without_copies(user_a):
    room = Conversation.objects.create(title="old room")
    history = DjangoChatMessageHistory(conversation=room, user=user_a)
    history.add_messages([HumanMessage(content="hi"), AIMessage(content="hello")])
    ConversationMessage.objects.create(conversation=room, user=user_a, role="ai", content={"v": 1, "type": "ai", "data": {"content": "cut"}}, status="interrupted")
    history.add_messages([HumanMessage(content="still there?"), AIMessage(content="yes")])
    saver = DjangoSaver()
    graph = echo_graph(saver)
    config = config_of(conversation_thread_id(room, user_a))

    graph.update_state(config, {"messages": saver.thread_messages(config["configurable"]["thread_id"])})
    graph.invoke({"messages": [HumanMessage(content="new")]}, config)

    expected = ["hi", "hello", "still there?", "yes", "new", "echo: new"]
    assert contents(echo_graph(DjangoSaver()).get_state(config).values["messages"]) == expected
    assert room.messages.count() == 7


def test_threads_the_saver_has_forgotten_are_read_back_without_storing_their_messages_again():
    graph = echo_graph(DjangoSaver(cache_threads=1))  # remembers one thread at a time
    for text in ("one", "two"):
        for thread_id in ("first", "second"):
            graph.invoke({"messages": [HumanMessage(content=f"{text} in {thread_id}")]}, config_of(thread_id))

    for thread_id in ("first", "second"):
        rows = ConversationMessage.objects.filter(conversation__session_id=thread_id).order_by("pk")
        assert contents(row.message for row in rows) == [
            f"one in {thread_id}", f"echo: one in {thread_id}", f"two in {thread_id}", f"echo: two in {thread_id}",
        ]  # fmt: skip


def test_sync_runs_save_their_checkpoints_on_a_few_long_lived_connections():
    # LangGraph saves a sync run's checkpoints from a new thread pool per call: one database
    # connection each would be opened (and leaked) per call.
    saver = DjangoSaver()
    used = []
    put, put_writes = saver._put, saver._put_writes

    def recording_put(*args):
        used.append(connections["default"])
        return put(*args)

    def recording_put_writes(*args):
        used.append(connections["default"])
        return put_writes(*args)

    saver._put, saver._put_writes = recording_put, recording_put_writes
    graph = echo_graph(saver)
    for text in ("one", "two", "three", "four", "five"):
        graph.invoke({"messages": [HumanMessage(content=text)]}, config_of("pooled"))

    assert len(used) >= 15
    assert len(set(used)) <= dbthread.MAX_SETS and connections["default"] not in used


def test_list_pages_through_long_histories_newest_first():
    saver = DjangoSaver()
    graph = echo_graph(saver)
    for turn in range(40):  # three checkpoints a turn: more than one page of list()
        graph.invoke({"messages": [HumanMessage(content=f"turn {turn}")]}, config_of("paged"))

    listed = [item.checkpoint["id"] for item in saver.list(config_of("paged"))]
    assert len(listed) == len(set(listed)) == 120
    assert listed == sorted(listed, reverse=True)
    assert [item.checkpoint["id"] for item in saver.list(config_of("paged"), limit=105)] == listed[:105]
    inputs = list(saver.list(config_of("paged"), filter={"source": "input", "parents": {}}))
    assert len(inputs) == 40


def test_reading_a_long_thread_leaves_the_garbage_collector_as_it_was(monkeypatch):
    import gc

    from pyhub_ai import checkpoint_messages

    monkeypatch.setattr(checkpoint_messages, "_PAUSE_COLLECTION_ROWS", 2)  # "long": two rows
    echo_graph(DjangoSaver()).invoke({"messages": [HumanMessage(content="one")]}, config_of("long-read"))

    assert contents(echo_graph(DjangoSaver()).get_state(config_of("long-read")).values["messages"]) == ["one", "echo: one"]
    assert gc.isenabled()
    gc.disable()
    try:
        echo_graph(DjangoSaver()).get_state(config_of("long-read"))
        assert not gc.isenabled()
    finally:
        gc.enable()
