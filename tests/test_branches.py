"""Edit and regenerate as branches: the frames of docs/protocol.md (1.1), what is stored, what the
model is sent, and who may touch which message."""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from pyhub_ai.history import DjangoChatMessageHistory
from pyhub_ai.models import Conversation, ConversationMessage, ThreadBranch

from .conftest import fake_model
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


async def open_thread(conversation, user):
    communicator = await connect(conversation.pk, user, route="plain")
    await receive_until(communicator, "history")
    return communicator


async def turn(communicator, frame: dict) -> list[dict]:
    await communicator.send_json_to(frame)
    return await receive_until(communicator, "stream_end")


def texts(model_call) -> list[tuple[str, str]]:
    return [(m.type, m.text) for m in model_call if not isinstance(m, SystemMessage)]


async def page_of(communicator) -> list[tuple[str, str]]:
    """The latest page of the branch shown, as a new tab would get it."""
    return [(m["role"], m["text"]) for m in (await receive_until(communicator, "history"))[-1]["messages"]]


async def test_regenerate_answers_the_same_question_again_as_a_second_version(user_a, use_model):
    model = use_model(fake_model("first answer", "second answer"))
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_thread(conversation, user_a)
    first = (await turn(tab, {"type": "user_message", "text": "a question"}))[-1]["message"]

    frames = await turn(tab, {"type": "regenerate", "message_id": first["id"]})

    reset = next(f for f in frames if f["type"] == "history")
    assert reset["reset"] is True and [m["role"] for m in reset["messages"]] == ["human", "ai"]
    assert not [f for f in frames if f["type"] == "message"]  # the question is not stored again
    reply = frames[-1]["message"]
    assert reply["text"] == "second answer" and reply["versions"] == [first["id"], reply["id"]]
    assert texts(model.calls[1]) == [("human", "a question")]  # not the first answer
    humans = ConversationMessage.objects.filter(conversation=conversation, role="human")
    assert await humans.acount() == 1
    await tab.disconnect()


async def test_editing_a_message_keeps_the_old_branch_and_the_prompt_is_the_new_branch_only(user_a, use_model):
    model = use_model(fake_model("answer one", "answer two", "answer edited", "answer three"))
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_thread(conversation, user_a)
    await turn(tab, {"type": "user_message", "text": "one"})
    second = next(f for f in await turn(tab, {"type": "user_message", "text": "two"}) if f["type"] == "message")["message"]

    frames = await turn(tab, {"type": "edit_message", "message_id": second["id"], "text": "two, edited"})

    reset = next(f for f in frames if f["type"] == "history")
    edited = reset["messages"][2]
    assert (edited["text"], edited["versions"]) == ("two, edited", [second["id"], edited["id"]])
    assert texts(model.calls[2]) == [("human", "one"), ("ai", "answer one"), ("human", "two, edited")]
    await turn(tab, {"type": "user_message", "text": "three"})
    assert texts(model.calls[3]) == [
        ("human", "one"), ("ai", "answer one"), ("human", "two, edited"), ("ai", "answer edited"), ("human", "three")
    ]
    await tab.disconnect()

    new_tab = await connect(conversation.pk, user_a, route="plain")
    assert await page_of(new_tab) == [
        ("human", "one"), ("ai", "answer one"), ("human", "two, edited"), ("ai", "answer edited"),
        ("human", "three"), ("ai", "answer three"),
    ]
    await new_tab.disconnect()


async def test_switching_branches_shows_the_other_version_with_what_followed_it_also_after_reconnecting(user_a, use_model):
    use_model(fake_model("answer one", "answer two", "answer edited"))
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_thread(conversation, user_a)
    await turn(tab, {"type": "user_message", "text": "one"})
    second = next(f for f in await turn(tab, {"type": "user_message", "text": "two"}) if f["type"] == "message")["message"]
    await turn(tab, {"type": "edit_message", "message_id": second["id"], "text": "two, edited"})

    await tab.send_json_to({"type": "switch_branch", "message_id": second["id"]})
    reset = (await receive_until(tab, "history"))[-1]

    assert reset["reset"] is True
    assert [(m["text"], m.get("versions")) for m in reset["messages"]][2:] == [
        ("two", [second["id"], second["id"] + 2]), ("answer two", None)
    ]
    await tab.disconnect()
    again = await connect(conversation.pk, user_a, route="plain")
    assert [text for _, text in await page_of(again)] == ["one", "answer one", "two", "answer two"]
    await again.disconnect()


async def test_another_users_message_is_refused_like_one_that_does_not_exist(user_a, user_b, use_model):
    use_model(fake_model("answer"))
    alices = await Conversation.objects.acreate(user=user_a)
    alice = await open_thread(alices, user_a)
    reply = (await turn(alice, {"type": "user_message", "text": "alice's question"}))[-1]["message"]
    await alice.disconnect()
    bobs = await Conversation.objects.acreate(user=user_b)
    bob = await open_thread(bobs, user_b)
    stored = await ConversationMessage.objects.acount()

    refusals = []
    for frame in (
        {"type": "regenerate", "message_id": reply["id"]},
        {"type": "edit_message", "message_id": reply["id"] - 1, "text": "mine now"},
        {"type": "switch_branch", "message_id": reply["id"]},
        {"type": "regenerate", "message_id": 999_999},
        {"type": "switch_branch", "message_id": 999_999},
    ):
        await bob.send_json_to(frame)
        refusals.append(await bob.receive_json_from(timeout=3))

    assert refusals == [{"type": "error", "code": "not_found", "message": "This message does not exist."}] * 5
    assert await ConversationMessage.objects.acount() == stored
    assert not await ThreadBranch.objects.filter(conversation=alices).aexists()
    await bob.disconnect()


async def test_a_reply_to_the_hidden_starter_cannot_be_regenerated_and_a_human_message_is_not_a_reply(user_a, use_model):
    use_model(fake_model("answer"))
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_thread(conversation, user_a)
    frames = await turn(tab, {"type": "user_message", "text": "question"})
    human = next(f for f in frames if f["type"] == "message")["message"]

    await tab.send_json_to({"type": "regenerate", "message_id": human["id"]})
    assert (await tab.receive_json_from(timeout=3))["code"] == "not_found"
    await tab.send_json_to({"type": "edit_message", "message_id": frames[-1]["message"]["id"], "text": "x"})
    assert (await tab.receive_json_from(timeout=3))["code"] == "not_found"
    await tab.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "regenerate"},
        {"type": "regenerate", "message_id": "12"},
        {"type": "switch_branch", "message_id": True},
        {"type": "switch_branch", "message_id": 2**63},
        {"type": "edit_message", "message_id": 1, "text": "  "},
        {"type": "edit_message", "message_id": 1},
    ],
)
async def test_malformed_branch_frames_are_refused(user_a, frame):
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_thread(conversation, user_a)
    await tab.send_json_to(frame)
    error = await tab.receive_json_from(timeout=3)
    assert error["type"] == "error" and error["code"] in ("invalid_frame", "empty_message")
    await tab.disconnect()


async def test_retry_of_an_interrupted_reply_is_a_regenerate_and_the_window_skips_the_failed_version(user_a, use_model):
    model = use_model(fake_model("good answer", "next answer"))
    conversation = await Conversation.objects.acreate(user=user_a)
    thread = {"conversation": conversation, "user": user_a, "turn_id": "00000000-0000-0000-0000-000000000001"}
    await ConversationMessage.from_message(HumanMessage("question"), **thread).asave()
    failed = ConversationMessage.from_message(AIMessage("half an"), status="interrupted", **thread)
    await failed.asave()
    tab = await open_thread(conversation, user_a)

    reply = (await turn(tab, {"type": "regenerate", "message_id": failed.pk}))[-1]["message"]
    await turn(tab, {"type": "user_message", "text": "and then?"})

    assert reply["versions"] == [failed.pk, reply["id"]]
    assert texts(model.calls[1]) == [("human", "question"), ("ai", "good answer"), ("human", "and then?")]
    await tab.disconnect()


def test_djangochatmessagehistory_reads_and_appends_to_the_branch_shown(user_a):
    conversation = Conversation.objects.create(user=user_a)
    history = DjangoChatMessageHistory(conversation=conversation, user=user_a)
    history.add_messages([HumanMessage("one"), AIMessage("answer one"), HumanMessage("two"), AIMessage("answer two")])
    two = ConversationMessage.objects.get(conversation=conversation, role="human", content__data__content="two")
    turn = history.start_turn(HumanMessage("two, edited"), edit_of=two.pk)
    history.finish_turn(turn, AIMessage("answer edited"))

    history.add_messages([HumanMessage("three")])

    assert [m.text for m in DjangoChatMessageHistory(conversation=conversation, user=user_a).messages] == [
        "one", "answer one", "two, edited", "answer edited", "three"
    ]
    history.switch_branch(two.pk)
    assert [m.text for m in DjangoChatMessageHistory(conversation=conversation, user=user_a).messages] == [
        "one", "answer one", "two", "answer two"
    ]
    windowed = DjangoChatMessageHistory(conversation=conversation, user=user_a, max_messages=3)
    assert [m.text for m in windowed.messages] == ["answer one", "two", "answer two"][1:]  # starts on a human message

    history.clear()
    assert not ThreadBranch.objects.exists() and history.messages == []


async def test_a_turn_in_a_branched_thread_runs_the_same_bounded_queries_with_100_and_1000_stored_messages(user_a, use_model):
    from pyhub_ai import branches, locks

    from .test_turn_queries import queries_of_one_turn, shape, stored_thread

    use_model(fake_model("short answer", "short answer"))
    small, large = await stored_thread(user_a, 100), await stored_thread(user_a, 1_000)  # both longer than the window
    for conversation in (small, large):
        thread = {"conversation_id": conversation.pk, "user_id": user_a.pk, "visitor_key": ""}
        await sync_to_async(branches.make_branched)(locks.thread_key(conversation.pk, user_a.pk, ""), thread)

    small_queries = await queries_of_one_turn(user_a, small)
    large_queries = await queries_of_one_turn(user_a, large)

    assert [shape(sql) for sql in large_queries] == [shape(sql) for sql in small_queries]
    walks = [sql for sql in large_queries if "WITH RECURSIVE" in sql]
    assert walks and all("b.kept < " in sql for sql in walks), walks  # each walk stops after the window


async def test_earlier_pages_of_a_branched_thread_follow_the_branch_shown(user_a, use_model):
    use_model(fake_model("new answer"))
    conversation = await Conversation.objects.acreate(user=user_a)
    await sync_to_async(DjangoChatMessageHistory(conversation=conversation, user=user_a).add_messages)(
        [HumanMessage(f"q{n}") if n % 2 == 0 else AIMessage(f"a{n}") for n in range(50)]
    )
    last_answer = await ConversationMessage.objects.filter(conversation=conversation).alatest("pk")
    tab = await open_thread(conversation, user_a)
    await turn(tab, {"type": "regenerate", "message_id": last_answer.pk})
    await tab.disconnect()

    again = await connect(conversation.pk, user_a, route="plain")
    first = (await receive_until(again, "history"))[-1]
    texts_seen = [m["text"] for m in first["messages"]]
    while first["has_more"]:
        await again.send_json_to({"type": "load_history", "before": first["messages"][0]["id"]})
        first = await again.receive_json_from(timeout=3)
        texts_seen = [m["text"] for m in first["messages"]] + texts_seen

    assert texts_seen == [f"q{n}" if n % 2 == 0 else f"a{n}" for n in range(49)] + ["new answer"]
    await again.disconnect()


async def test_a_switch_reaches_every_tab_and_waits_while_another_tabs_reply_streams(user_a, use_model):
    from .conftest import HangingFakeChatModel

    use_model(fake_model("answer one", "answer again"))
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_thread(conversation, user_a)
    first = (await turn(tab, {"type": "user_message", "text": "one"}))[-1]["message"]
    second = (await turn(tab, {"type": "regenerate", "message_id": first["id"]}))[-1]["message"]
    other = await open_thread(conversation, user_a)

    await tab.send_json_to({"type": "switch_branch", "message_id": first["id"]})
    seen = (await receive_until(other, "history"))[-1]
    assert seen["reset"] is True and [m["text"] for m in seen["messages"]] == ["one", "answer one"]

    use_model(HangingFakeChatModel(messages=iter([AIMessage(content="never ends")]), hang_after=1, calls=[]))
    await other.send_json_to({"type": "user_message", "text": "two"})
    await receive_until(other, "stream_delta")
    await receive_until(tab, "stream_delta")
    await tab.send_json_to({"type": "switch_branch", "message_id": second["id"]})
    assert (await receive_until(tab, "error"))[-1]["code"] == "turn_in_progress"
    assert (await ThreadBranch.objects.aget(conversation=conversation)).leaf != second["id"]
    await other.disconnect()
    await tab.disconnect()
