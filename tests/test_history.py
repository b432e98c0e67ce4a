"""DjangoChatMessageHistory: LangChain's chat-history interface over the pyhub_ai models."""
from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from pyhub_ai.history import DjangoChatMessageHistory
from pyhub_ai.models import Conversation, ConversationMessage

from .conftest import fake_model

CHAT = [HumanMessage("Hi! I'm bob"), AIMessage("Hello Bob!"), HumanMessage("What's my name?"), AIMessage("Bob.")]


def said(messages):
    """What a list of messages says, as (role, text) pairs."""
    return [("ai" if isinstance(m, AIMessage) else m.type, m.content) for m in messages]


@pytest.fixture
def room(db):
    """An owner-less conversation: every user has a private thread in it."""
    return Conversation.objects.create(title="room")


def store(conversation, message, **fields):
    ConversationMessage.from_message(message, conversation=conversation, **fields).save()


# -- Construction ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_creating_a_history_does_no_database_work(room, user_a, django_assert_num_queries):
    with django_assert_num_queries(0):
        DjangoChatMessageHistory("some-session")
        DjangoChatMessageHistory(conversation=room, user=user_a)
        DjangoChatMessageHistory(conversation=room.pk, visitor_key="visitor", max_messages=10)


@pytest.mark.parametrize(
    "kwargs",
    [pytest.param({}, id="neither"), pytest.param({"session_id": "s", "conversation": 1}, id="both")],
)
def test_a_history_needs_exactly_one_of_session_id_or_conversation(kwargs):
    with pytest.raises(TypeError, match="exactly one of session_id or conversation"):
        DjangoChatMessageHistory(**kwargs)


# -- Reading and writing -----------------------------------------------------------------------


def test_add_messages_stores_them_in_one_insert(room, django_assert_num_queries):
    history = DjangoChatMessageHistory(conversation=room)

    with django_assert_num_queries(2):  # where the thread's branch ends (pyhub_ai.branches), then one INSERT
        history.add_messages(CHAT)

    assert [(row.role, row.message.content) for row in room.messages.order_by("pk")] == [
        ("human", "Hi! I'm bob"),
        ("ai", "Hello Bob!"),
        ("human", "What's my name?"),
        ("ai", "Bob."),
    ]


def test_messages_returns_what_was_added_in_order(room):
    history = DjangoChatMessageHistory(conversation=room)
    tool_turn = [
        HumanMessage("Weather?"),
        AIMessage("", tool_calls=[{"name": "weather", "args": {}, "id": "call_1", "type": "tool_call"}]),
        ToolMessage("Sunny", tool_call_id="call_1"),
        AIMessage("It is sunny."),
    ]

    history.add_messages(CHAT)
    history.add_messages(tool_turn)

    assert history.messages == CHAT + tool_turn


def test_a_new_history_object_reads_what_another_stored(room):
    DjangoChatMessageHistory(conversation=room).add_messages(CHAT)

    assert DjangoChatMessageHistory(conversation=room.pk).messages == CHAT


def test_clear_deletes_only_this_users_thread(room, user_a, user_b):
    alice = DjangoChatMessageHistory(conversation=room, user=user_a)
    bob = DjangoChatMessageHistory(conversation=room, user=user_b)
    alice.add_messages(CHAT[:2])
    bob.add_messages(CHAT[2:])

    alice.clear()

    assert alice.messages == []
    assert bob.messages == CHAT[2:]


def test_each_user_sees_only_their_own_thread_of_a_shared_conversation(room, user_a, user_b):
    alice = DjangoChatMessageHistory(conversation=room, user=user_a)
    bob = DjangoChatMessageHistory(conversation=room, user=user_b)
    visitor = DjangoChatMessageHistory(conversation=room, visitor_key="visitor-hash")

    alice.add_messages([HumanMessage("I am alice")])
    bob.add_messages([HumanMessage("I am bob")])
    visitor.add_messages([HumanMessage("I am anonymous")])

    assert said(alice.messages) == [("human", "I am alice")]
    assert said(bob.messages) == [("human", "I am bob")]
    assert said(visitor.messages) == [("human", "I am anonymous")]


# -- The window ------------------------------------------------------------------------------


def test_max_messages_keeps_the_newest_messages_oldest_first(room):
    DjangoChatMessageHistory(conversation=room).add_messages(CHAT + [HumanMessage("Bye"), AIMessage("Bye Bob")])

    window = DjangoChatMessageHistory(conversation=room, max_messages=4).messages

    assert said(window) == [("human", "What's my name?"), ("ai", "Bob."), ("human", "Bye"), ("ai", "Bye Bob")]


def test_a_window_that_would_start_with_an_ai_message_starts_at_the_next_human_message(room):
    DjangoChatMessageHistory(conversation=room).add_messages(CHAT)

    window = DjangoChatMessageHistory(conversation=room, max_messages=3).messages

    assert said(window) == [("human", "What's my name?"), ("ai", "Bob.")]


def test_without_max_messages_the_whole_thread_is_returned(room):
    DjangoChatMessageHistory(conversation=room).add_messages([SystemMessage("be brief"), AIMessage("Welcome!"), *CHAT])

    assert len(DjangoChatMessageHistory(conversation=room).messages) == 6


@pytest.mark.parametrize("status", ["error", "interrupted", "streaming"])
def test_unfinished_replies_are_left_out(room, status):
    store(room, HumanMessage("first"))
    store(room, AIMessage("half a rep"), status=status)
    store(room, HumanMessage("second"))

    assert said(DjangoChatMessageHistory(conversation=room).messages) == [("human", "first"), ("human", "second")]


def test_include_failed_returns_unfinished_replies_too(room):
    store(room, HumanMessage("first"))
    store(room, AIMessage("half a rep"), status="error")
    store(room, AIMessage("cut o"), status="interrupted")

    history = DjangoChatMessageHistory(conversation=room, include_failed=True)

    assert said(history.messages) == [("human", "first"), ("ai", "half a rep"), ("ai", "cut o")]


# -- Async -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_async_add_and_get_messages(user_a):
    room = await Conversation.objects.acreate()
    history = DjangoChatMessageHistory(conversation=room, user=user_a)

    await history.aadd_messages(CHAT[:2])
    await history.aadd_messages(CHAT[2:])

    assert await history.aget_messages() == CHAT


@pytest.mark.django_db(transaction=True)
async def test_async_clear_deletes_only_this_users_thread(user_a, user_b):
    room = await Conversation.objects.acreate()
    alice = DjangoChatMessageHistory(conversation=room, user=user_a)
    bob = DjangoChatMessageHistory(conversation=room, user=user_b)
    await alice.aadd_messages(CHAT[:2])
    await bob.aadd_messages(CHAT[2:])

    await alice.aclear()

    assert await alice.aget_messages() == []
    assert await bob.aget_messages() == CHAT[2:]


@pytest.mark.django_db(transaction=True)
async def test_async_window_and_failed_replies_behave_like_sync():
    room = await Conversation.objects.acreate()
    await DjangoChatMessageHistory(conversation=room).aadd_messages(CHAT)
    await ConversationMessage.from_message(AIMessage("broken"), conversation=room, status="error").asave()

    window = await DjangoChatMessageHistory(conversation=room, max_messages=3).aget_messages()

    assert said(window) == [("human", "What's my name?"), ("ai", "Bob.")]


# -- Addressing by session_id --------------------------------------------------------------------


@pytest.mark.django_db
def test_reading_an_unknown_session_returns_nothing_and_creates_nothing():
    history = DjangoChatMessageHistory("never-seen")

    assert history.messages == []
    history.clear()
    assert not Conversation.objects.exists()


@pytest.mark.django_db
def test_the_first_write_to_a_session_creates_its_conversation():
    DjangoChatMessageHistory("new-session").add_messages(CHAT[:2])

    conversation = Conversation.objects.get(session_id="new-session")
    assert conversation.messages.count() == 2


@pytest.mark.django_db
def test_two_histories_with_the_same_session_id_share_the_messages():
    DjangoChatMessageHistory("shared").add_messages(CHAT[:2])
    DjangoChatMessageHistory("shared").add_messages(CHAT[2:])

    assert DjangoChatMessageHistory("shared").messages == CHAT
    assert Conversation.objects.filter(session_id="shared").count() == 1


@pytest.mark.django_db(transaction=True)
async def test_async_session_addressing_creates_on_first_write_only():
    history = DjangoChatMessageHistory("async-session")

    assert await history.aget_messages() == []
    assert not await Conversation.objects.aexists()

    await history.aadd_messages(CHAT[:2])

    assert await DjangoChatMessageHistory("async-session").aget_messages() == CHAT[:2]
    assert await Conversation.objects.filter(session_id="async-session").acount() == 1


# -- LangChain's RunnableWithMessageHistory (seed 000's chain, with our history) -----------------

CONFIG = {"configurable": {"session_id": "bob-session"}}
with_history_is_deprecated = pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")


def chain_with_history(model):
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are a helpful assistant."),
            MessagesPlaceholder(variable_name="history"),
            ("human", "{question}"),
        ]
    )
    chain = prompt | model
    return RunnableWithMessageHistory(
        chain,
        lambda session_id: DjangoChatMessageHistory(session_id=session_id),
        input_messages_key="question",
        history_messages_key="history",
    )


SECOND_PROMPT = [
    ("system", "You are a helpful assistant."),
    ("human", "Hi! I'm bob"),
    ("ai", "Hello Bob! How can I help?"),
    ("human", "Whats my name"),
]
STORED = [
    ("human", "Hi! I'm bob"),
    ("ai", "Hello Bob! How can I help?"),
    ("human", "Whats my name"),
    ("ai", "Your name is Bob!"),
]


def stored_rows(session_id):
    return [(row.role, row.message.content) for row in ConversationMessage.objects.filter(conversation__session_id=session_id)]


async def astored_rows(session_id):
    return [
        (row.role, row.message.content)
        async for row in ConversationMessage.objects.filter(conversation__session_id=session_id)
    ]


@with_history_is_deprecated
# transaction=True: LangChain reads the history in a worker thread, whose database connection
# cannot see rows inside the test's open transaction (in production every write is committed).
@pytest.mark.django_db(transaction=True)
def test_the_chain_sends_the_stored_conversation_with_the_next_question():
    model = fake_model("Hello Bob! How can I help?", "Your name is Bob!")
    chain = chain_with_history(model)

    chain.invoke({"question": "Hi! I'm bob"}, config=CONFIG)
    answer = chain.invoke({"question": "Whats my name"}, config=CONFIG)

    assert answer.content == "Your name is Bob!"
    assert said(model.calls[1]) == SECOND_PROMPT
    assert stored_rows("bob-session") == STORED


@with_history_is_deprecated
@pytest.mark.django_db(transaction=True)
async def test_the_async_chain_sends_the_stored_conversation_with_the_next_question():
    model = fake_model("Hello Bob! How can I help?", "Your name is Bob!")
    chain = chain_with_history(model)

    await chain.ainvoke({"question": "Hi! I'm bob"}, config=CONFIG)
    answer = await chain.ainvoke({"question": "Whats my name"}, config=CONFIG)

    assert answer.content == "Your name is Bob!"
    assert said(model.calls[1]) == SECOND_PROMPT
    assert await astored_rows("bob-session") == STORED
    stored_types = [row.content["type"] async for row in ConversationMessage.objects.filter(role="ai")]
    assert stored_types == ["ai", "ai"]  # streamed chunks are stored as whole messages


@with_history_is_deprecated
@pytest.mark.django_db(transaction=True)
async def test_the_streamed_chain_sends_the_stored_conversation_with_the_next_question():
    model = fake_model("Hello Bob! How can I help?", "Your name is Bob!")
    chain = chain_with_history(model)

    first = [chunk async for chunk in chain.astream({"question": "Hi! I'm bob"}, config=CONFIG)]
    second = [chunk async for chunk in chain.astream({"question": "Whats my name"}, config=CONFIG)]

    assert len(first) > 1
    assert "".join(chunk.content for chunk in second) == "Your name is Bob!"
    assert said(model.calls[1]) == SECOND_PROMPT
    assert await astored_rows("bob-session") == STORED
