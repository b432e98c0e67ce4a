"""The history window: newest messages within a message count and a token budget, never a broken tool sequence."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.checks import Error
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from pyhub_ai import checks, codec, statements
from pyhub_ai.history import DjangoChatMessageHistory
from pyhub_ai.models import Conversation, ConversationMessage
from pyhub_ai.tokens import approximate_token_count, count_tokens

pytestmark = pytest.mark.django_db


def store(conversation, *messages):
    ConversationMessage.objects.bulk_create(
        [ConversationMessage.from_message(message, conversation=conversation) for message in messages]
    )


def said(messages):
    return [(m.type, m.content) for m in messages]


TOOL_TURN = [
    HumanMessage(content="weather in Seoul?"),
    AIMessage(content="", tool_calls=[{"name": "weather", "args": {"city": "Seoul"}, "id": "c1"}]),
    ToolMessage(content="sunny", tool_call_id="c1"),
    AIMessage(content="It is sunny."),
]


def test_the_token_count_is_stored_with_each_message():
    conversation = Conversation.objects.create()
    store(conversation, HumanMessage(content="hello there"), AIMessage(content="안녕하세요"))
    counts = list(ConversationMessage.objects.values_list("token_count", flat=True))
    assert counts == [count_tokens(HumanMessage(content="hello there")), count_tokens(AIMessage(content="안녕하세요"))]
    assert counts[1] == 4 + 5  # overhead + one token per Hangul syllable


def test_the_approximate_counter_counts_tool_call_arguments():
    call = AIMessage(content="", tool_calls=[{"name": "f", "args": {"query": "x" * 40}, "id": "1"}])
    assert approximate_token_count(call) > approximate_token_count(AIMessage(content=""))


def test_a_token_budget_keeps_the_newest_messages_that_fit():
    conversation = Conversation.objects.create()
    store(conversation, *[HumanMessage(content=f"question {i} " + "x" * 36) for i in range(10)])
    each = ConversationMessage.objects.first().token_count
    history = DjangoChatMessageHistory(conversation=conversation, max_tokens=each * 3 + 1)
    assert [m.content.split()[1] for m in history.messages] == ["7", "8", "9"]


def test_the_window_never_starts_with_a_tool_result_or_splits_a_tool_call_from_it():
    conversation = Conversation.objects.create()
    store(conversation, HumanMessage(content="hi"), AIMessage(content="hello"), *TOOL_TURN)
    # The newest 3 would start with the AI tool call (no question) and a 2-message window with
    # the tool result: both are cut back to what can stand alone.
    assert said(DjangoChatMessageHistory(conversation=conversation, max_messages=5).messages) == said(TOOL_TURN)
    assert said(DjangoChatMessageHistory(conversation=conversation, max_messages=3).messages) == [
        ("ai", ""),
        ("tool", "sunny"),
        ("ai", "It is sunny."),
    ]
    assert said(DjangoChatMessageHistory(conversation=conversation, max_messages=2).messages) == [("ai", "It is sunny.")]


def test_a_window_of_only_tool_results_is_empty():
    conversation = Conversation.objects.create()
    store(conversation, *TOOL_TURN[:3])
    assert DjangoChatMessageHistory(conversation=conversation, max_messages=1).messages == []


def test_the_consumer_window_follows_the_settings(settings):
    from tests.routing import PlainChatConsumer

    settings.PYHUB_AI_HISTORY_MAX_MESSAGES = 7
    settings.PYHUB_AI_HISTORY_MAX_TOKENS = 500
    consumer = PlainChatConsumer()
    consumer.scope = {}
    consumer.conversation = Conversation.objects.create()
    history = consumer.get_history()
    assert (history.max_messages, history.max_tokens) == (7, 500)
    consumer.history_max_messages, consumer.history_max_tokens = 3, 100
    history = consumer.get_history()
    assert (history.max_messages, history.max_tokens) == (3, 100)


@pytest.mark.parametrize("value", [timedelta(0), -5, "30d", True])
def test_check_e003_refuses_a_bad_conversation_ttl(settings, value):
    settings.PYHUB_AI_CONVERSATION_TTL = value
    assert [error.id for error in checks.check_conversation_ttl()] == ["pyhub_ai.E003"]


@pytest.mark.parametrize("value", [None, timedelta(days=30), 3600])
def test_check_e003_accepts_a_good_conversation_ttl(settings, value):
    settings.PYHUB_AI_CONVERSATION_TTL = value
    assert checks.check_conversation_ttl() == []


@pytest.mark.parametrize("path", ["no.such.module.counter", "pyhub_ai.tokens.MESSAGE_OVERHEAD"])
def test_check_e004_refuses_a_token_counter_that_cannot_be_used(settings, path):
    settings.PYHUB_AI_TOKEN_COUNTER = path
    errors = checks.check_token_counter()
    assert [error.id for error in errors] == ["pyhub_ai.E004"] and isinstance(errors[0], Error)


def test_a_custom_token_counter_is_used(settings):
    settings.PYHUB_AI_TOKEN_COUNTER = "tests.test_window.ten_tokens"
    assert checks.check_token_counter() == []
    assert count_tokens(HumanMessage(content="anything")) == 10


def ten_tokens(message) -> int:
    return 10


def test_a_history_rereads_its_window_without_decoding_the_messages_it_has_decoded(monkeypatch):
    conversation = Conversation.objects.create()
    store(conversation, HumanMessage(content="one"), AIMessage(content="two"))
    history = DjangoChatMessageHistory(conversation=conversation, max_messages=3)
    assert said(history.messages) == [("human", "one"), ("ai", "two")]

    decoded = []
    real_decode = codec.decode
    monkeypatch.setattr(codec, "decode", lambda stored: decoded.append(stored["data"]["content"]) or real_decode(stored))
    store(conversation, HumanMessage(content="three"), AIMessage(content="four"))
    assert said(history.messages) == [("human", "three"), ("ai", "four")]  # the window of 3 starts on a human message
    assert sorted(decoded) == ["four", "three"]  # "two" was remembered; "one" has left the window
    assert said(history.messages) == [("human", "three"), ("ai", "four")]
    assert sorted(decoded) == ["four", "three"]  # nothing new: nothing decoded


def test_a_remembered_window_still_sees_deleted_and_finished_rows():
    conversation = Conversation.objects.create()
    store(conversation, HumanMessage(content="question"))
    streaming = ConversationMessage.from_message(AIMessage(content="half"), conversation=conversation, status="streaming")
    streaming.save()
    history = DjangoChatMessageHistory(conversation=conversation, include_failed=True)
    assert said(history.messages) == [("human", "question"), ("ai", "half")]

    ConversationMessage.objects.filter(pk=streaming.pk).update(
        content=ConversationMessage.from_message(AIMessage(content="whole answer")).content, status="complete"
    )
    assert said(history.messages) == [("human", "question"), ("ai", "whole answer")]  # a streaming row is reread

    ConversationMessage.objects.filter(content__data__content="question").delete()
    assert said(history.messages) == [("ai", "whole answer")]
    history.clear()
    assert history.messages == []


def test_a_later_turn_gets_the_turns_stored_before_it_without_reading_their_messages_again(monkeypatch):
    conversation = Conversation.objects.create()
    store(conversation, HumanMessage(content="one"), AIMessage(content="two"))
    history = DjangoChatMessageHistory(conversation=conversation, max_messages=10)
    assert said(history.messages) == [("human", "one"), ("ai", "two")]
    first = history.start_turn(HumanMessage(content="three"))
    history.finish_turn(first, AIMessage(content="four", response_metadata={"model_name": "m"}))

    read = []
    real_contents = statements.message_contents
    monkeypatch.setattr(statements, "message_contents", lambda ids: read.append(list(ids)) or real_contents(ids))
    second = history.start_turn(HumanMessage(content="five"))

    assert said(second.previous_messages) == [("human", "one"), ("ai", "two"), ("human", "three"), ("ai", "four")]
    assert read == []  # the rows of the turn before were stored by this history: it kept their messages
    fresh = DjangoChatMessageHistory(conversation=conversation, max_messages=10).messages
    assert second.previous_messages == fresh[:-1]  # as a fresh read decodes them ("five": complete, its reply streaming)
