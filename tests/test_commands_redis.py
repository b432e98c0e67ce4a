"""pyhub_ai_import --from-redis: LangChain's RedisChatMessageHistory data, from a real Redis."""
from __future__ import annotations

import uuid
import warnings
from io import StringIO

import pytest
import redis
from django.core.management import CommandError, call_command
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from pyhub_ai.history import DjangoChatMessageHistory
from pyhub_ai.models import Conversation, ConversationMessage
from pyhub_ai.tokens import count_tokens

from .redis_server import redis_url  # noqa: F401  (the fixture)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # "langchain-community is being sunset"
    from langchain_community.chat_message_histories import RedisChatMessageHistory

WEATHER = [
    SystemMessage("You are a weather bot."),
    HumanMessage("서울 날씨 어때?"),
    AIMessage(
        content="",
        tool_calls=[{"name": "get_weather", "args": {"city": "Seoul"}, "id": "call_1", "type": "tool_call"}],
        usage_metadata={"input_tokens": 20, "output_tokens": 5, "total_tokens": 25},
    ),
    ToolMessage(content="Sunny, 21°C", tool_call_id="call_1", name="get_weather", artifact={"temp": 21}),
    AIMessage("It is sunny and 21°C in Seoul."),
]
GREETING = [HumanMessage("Hi! I'm bob"), AIMessage("Hello Bob!")]


@pytest.fixture
def client(redis_url):  # noqa: F811
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def prefix(client):
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex}:message_store:"
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


@pytest.fixture
def stored(redis_url, prefix):  # noqa: F811
    """Two sessions written by LangChain's own RedisChatMessageHistory."""
    RedisChatMessageHistory("weather", url=redis_url, key_prefix=prefix).add_messages(WEATHER)
    greeting = RedisChatMessageHistory("greeting", url=redis_url, key_prefix=prefix)
    for message in GREETING:
        greeting.add_message(message)


def import_redis(redis_url, **options):  # noqa: F811
    out = StringIO()
    call_command("pyhub_ai_import", from_redis=redis_url, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def stored_messages(session_id):
    return [row.message for row in Conversation.objects.get(session_id=session_id).messages.order_by("pk")]


@pytest.mark.django_db
def test_each_session_becomes_one_conversation_with_its_messages_in_order(redis_url, prefix, stored):  # noqa: F811
    output = import_redis(redis_url, key_prefix=prefix)

    assert sorted(Conversation.objects.values_list("session_id", flat=True)) == ["greeting", "weather"]
    assert stored_messages("weather") == WEATHER
    assert stored_messages("greeting") == GREETING
    assert "Imported 7 messages from 2 Redis sessions." in output


@pytest.mark.django_db
def test_imported_messages_are_what_langchain_reads_from_redis(redis_url, prefix, stored):  # noqa: F811
    import_redis(redis_url, key_prefix=prefix)

    redis_history = RedisChatMessageHistory("weather", url=redis_url, key_prefix=prefix)
    assert DjangoChatMessageHistory("weather").messages == redis_history.messages


@pytest.mark.django_db
def test_imported_rows_have_roles_and_token_counts(redis_url, prefix, stored):  # noqa: F811
    import_redis(redis_url, key_prefix=prefix)

    rows = ConversationMessage.objects.filter(conversation__session_id="weather").order_by("pk")
    assert [row.role for row in rows] == ["system", "human", "ai", "tool", "ai"]
    assert [row.token_count for row in rows] == [count_tokens(message) for message in WEATHER]
    assert all(row.status == "complete" and row.user is None for row in rows)


@pytest.mark.django_db
def test_session_limits_the_import(redis_url, prefix, stored):  # noqa: F811
    import_redis(redis_url, key_prefix=prefix, session=["greeting"])

    assert list(Conversation.objects.values_list("session_id", flat=True)) == ["greeting"]


@pytest.mark.django_db
def test_the_default_key_prefix_is_langchains(redis_url, client):  # noqa: F811
    session_id = f"test-{uuid.uuid4().hex}"
    RedisChatMessageHistory(session_id, url=redis_url).add_messages(GREETING)
    try:
        import_redis(redis_url, session=[session_id])
    finally:
        client.delete(f"message_store:{session_id}")

    assert stored_messages(session_id) == GREETING


@pytest.mark.django_db
def test_importing_a_session_again_is_refused_without_append(redis_url, prefix, stored):  # noqa: F811
    import_redis(redis_url, key_prefix=prefix)

    with pytest.raises(CommandError, match="session ids exist already: greeting, weather. Pass --append"):
        import_redis(redis_url, key_prefix=prefix)

    assert ConversationMessage.objects.count() == 7


@pytest.mark.django_db
def test_append_adds_the_messages_to_the_existing_conversation(redis_url, prefix, stored):  # noqa: F811
    import_redis(redis_url, key_prefix=prefix, session=["greeting"])

    output = import_redis(redis_url, key_prefix=prefix, append=True)

    assert Conversation.objects.count() == 2
    assert stored_messages("greeting") == GREETING + GREETING
    assert "(1 appended to existing conversations)" in output


@pytest.mark.django_db
def test_a_corrupt_item_makes_the_import_fail_before_writing_anything(redis_url, client, prefix, stored):  # noqa: F811
    client.lpush(f"{prefix}weather", "not json")

    with pytest.raises(CommandError, match="Nothing was imported. .*weather item 5"):
        import_redis(redis_url, key_prefix=prefix)

    assert Conversation.objects.count() == 0


@pytest.mark.django_db
def test_an_unknown_session_is_an_error(redis_url, prefix, stored):  # noqa: F811
    with pytest.raises(CommandError, match="for session\\(s\\): nope"):
        import_redis(redis_url, key_prefix=prefix, session=["weather", "nope"])

    assert Conversation.objects.count() == 0


@pytest.mark.django_db
def test_no_lists_under_the_prefix_is_an_error(redis_url, prefix):  # noqa: F811
    with pytest.raises(CommandError, match="No RedisChatMessageHistory lists found"):
        import_redis(redis_url, key_prefix=prefix)


@pytest.mark.django_db
def test_an_unreachable_redis_is_an_error():
    with pytest.raises(CommandError, match="Could not read from Redis"):
        import_redis("redis://127.0.0.1:1/0")
