"""Thumbs up or down with a comment on a reply: the ``feedback`` frame (docs/protocol.md, 1.2),
what is stored, who may give it, and the export with the prompt context."""
from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from pyhub_ai import feedback
from pyhub_ai.history import DjangoChatMessageHistory
from pyhub_ai.models import Conversation, MessageFeedback

from .conftest import fake_model
from .test_branches import open_thread, turn
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


async def reply_in_new_thread(user, use_model):
    use_model(fake_model("an answer", "another answer"))
    conversation = await Conversation.objects.acreate(user=user)
    tab = await open_thread(conversation, user)
    reply = (await turn(tab, {"type": "user_message", "text": "a question"}))[-1]["message"]
    return conversation, tab, reply


async def test_thumbs_down_with_a_comment_is_stored_once_and_can_be_changed(user_a, use_model):
    conversation, tab, reply = await reply_in_new_thread(user_a, use_model)

    await tab.send_json_to({"type": "feedback", "message_id": reply["id"], "rating": "down", "comment": "Too vague"})
    first = await tab.receive_json_from(timeout=3)
    await tab.send_json_to({"type": "feedback", "message_id": reply["id"], "rating": "up", "comment": ""})
    second = await tab.receive_json_from(timeout=3)

    assert first == {"type": "feedback", "message_id": reply["id"], "feedback": {"rating": "down", "comment": "Too vague"}}
    assert second["feedback"] == {"rating": "up", "comment": ""}
    stored = [(f.rating, f.comment, f.user_id) async for f in MessageFeedback.objects.all()]
    assert stored == [(1, "", user_a.pk)]
    await tab.disconnect()

    again = await connect(conversation.pk, user_a, route="plain")
    page = (await receive_until(again, "history"))[-1]["messages"]
    assert [m.get("feedback") for m in page] == [None, {"rating": "up", "comment": ""}]
    await again.disconnect()


async def test_feedback_can_be_taken_back(user_a, use_model):
    _, tab, reply = await reply_in_new_thread(user_a, use_model)
    await tab.send_json_to({"type": "feedback", "message_id": reply["id"], "rating": "up"})
    await tab.receive_json_from(timeout=3)

    await tab.send_json_to({"type": "feedback", "message_id": reply["id"], "rating": None})

    assert (await tab.receive_json_from(timeout=3))["feedback"] is None
    assert not await MessageFeedback.objects.aexists()
    await tab.disconnect()


async def test_feedback_on_another_users_reply_or_on_a_human_message_is_refused_like_a_missing_one(user_a, user_b, use_model):
    _, alice, reply = await reply_in_new_thread(user_a, use_model)
    await alice.disconnect()
    bobs = await Conversation.objects.acreate(user=user_b)
    bob = await open_thread(bobs, user_b)

    answers = []
    for message_id in (reply["id"], reply["id"] - 1, 999_999):
        await bob.send_json_to({"type": "feedback", "message_id": message_id, "rating": "down", "comment": "mine"})
        answers.append(await bob.receive_json_from(timeout=3))

    assert answers == [{"type": "error", "code": "not_found", "message": "This message does not exist."}] * 3
    assert not await MessageFeedback.objects.aexists()
    await bob.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "feedback", "message_id": 1, "rating": "meh"},
        {"type": "feedback", "message_id": 1, "rating": "up", "comment": 5},
        {"type": "feedback", "message_id": 1, "rating": "up", "comment": "x" * 2001},
        {"type": "feedback", "rating": "up"},
    ],
)
async def test_malformed_feedback_is_refused(user_a, frame):
    conversation = await Conversation.objects.acreate(user=user_a)
    tab = await open_thread(conversation, user_a)
    await tab.send_json_to(frame)
    assert (await tab.receive_json_from(timeout=3))["code"] == "invalid_frame"
    await tab.disconnect()


async def test_another_tab_of_the_thread_sees_the_feedback(user_a, use_model):
    conversation, tab, reply = await reply_in_new_thread(user_a, use_model)
    other = await open_thread(conversation, user_a)

    await tab.send_json_to({"type": "feedback", "message_id": reply["id"], "rating": "up", "comment": "clear"})

    frame = (await receive_until(other, "feedback"))[-1]
    assert frame["feedback"] == {"rating": "up", "comment": "clear"}
    await tab.disconnect()
    await other.disconnect()


def test_the_export_has_the_reply_and_the_branch_the_model_was_sent(user_a):
    chat = Conversation.objects.create(user=user_a)
    history = DjangoChatMessageHistory(conversation=chat, user=user_a)
    history.add_messages([HumanMessage("one"), AIMessage("answer one"), HumanMessage("two"), AIMessage("answer two")])
    two = chat.messages.get(content__data__content="two")
    new_turn = history.start_turn(HumanMessage("two, edited"), edit_of=two.pk)
    history.finish_turn(new_turn, AIMessage("answer edited"))
    thread = {"conversation_id": chat.pk, "user_id": user_a.pk, "visitor_key": ""}
    feedback.set_feedback(thread, new_turn.ai.pk, "down", "Wrong")

    [record] = list(feedback.export_records(MessageFeedback.objects.all()))

    assert (record["rating"], record["comment"], record["user"]) == ("down", "Wrong", user_a.username)
    assert record["message"]["text"] == "answer edited" and record["message"]["content"]["data"]["content"] == "answer edited"
    assert [item["content"]["data"]["content"] for item in record["context"]] == ["one", "answer one", "two, edited"]


def test_the_export_context_of_a_thread_that_never_branched_is_what_came_before_the_reply(user_a):
    chat = Conversation.objects.create(user=user_a)
    DjangoChatMessageHistory(conversation=chat, user=user_a).add_messages(
        [HumanMessage("one"), AIMessage("answer one"), HumanMessage("two"), AIMessage("answer two"), HumanMessage("three")]
    )
    answer_one = chat.messages.get(content__data__content="answer one")
    feedback.set_feedback({"conversation_id": chat.pk, "user_id": user_a.pk, "visitor_key": ""}, answer_one.pk, "up")

    [record] = list(feedback.export_records(MessageFeedback.objects.all()))

    assert [item["content"]["data"]["content"] for item in record["context"]] == ["one"]
