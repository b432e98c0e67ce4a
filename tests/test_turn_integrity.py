"""Turns you can trust: idempotent resends, serialised concurrent turns, sliding expiry."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone
from langchain_core.messages import AIMessage, HumanMessage

from pyhub_ai.models import Conversation, ConversationMessage, ThreadLock

from .conftest import SlowFakeChatModel, fake_model
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


async def stored(conversation):
    return [
        (row.role, row.message.content, row.status)
        async for row in ConversationMessage.objects.filter(conversation=conversation).order_by("pk")
    ]


async def test_a_resent_frame_with_the_same_idempotency_key_does_not_start_a_second_turn(user_a, use_model):
    model = use_model(fake_model("only once", "never"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    frame = {"type": "user_message", "text": "hello", "idempotency_key": "c0ffee-1"}

    await communicator.send_json_to(frame)
    first = await receive_until(communicator, "stream_end")
    await communicator.send_json_to(frame)
    echo = await communicator.receive_json_from()

    assert echo["type"] == "message" and echo["duplicate"] is True
    assert echo["message"]["id"] == first[0]["message"]["id"]
    assert await communicator.receive_nothing(timeout=0.2)
    assert await stored(conversation) == [("human", "hello", "complete"), ("ai", "only once", "complete")]
    assert len(model.calls) == 1
    await communicator.disconnect()


async def test_the_same_idempotency_key_in_another_users_thread_is_a_new_message(user_a, user_b, use_model):
    use_model(fake_model("for alice", "for bob"))
    conversation = await Conversation.objects.acreate()
    for user in (user_a, user_b):
        communicator = await connect(conversation.pk, user, route="plain")
        await receive_until(communicator, "history")
        await communicator.send_json_to({"type": "user_message", "text": "hi", "idempotency_key": "same-key"})
        await receive_until(communicator, "stream_end")
        await communicator.disconnect()
    assert await ConversationMessage.objects.filter(conversation=conversation).acount() == 4


async def test_a_malformed_idempotency_key_is_refused(user_a, use_model):
    use_model(fake_model("unused"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "hi", "idempotency_key": "x" * 65})
    assert (await communicator.receive_json_from())["code"] == "invalid_frame"
    assert await ConversationMessage.objects.acount() == 0
    await communicator.disconnect()


async def both_turns(communicator) -> list[dict]:
    """The frames a tab receives until both turns of the test ended."""
    frames = []
    while sum(frame["type"] == "stream_end" for frame in frames) < 2:
        frames.append(await communicator.receive_json_from(timeout=5))
    return frames


async def test_two_tabs_sending_at_once_get_complete_turns_in_order(user_a, use_model):
    model = use_model(SlowFakeChatModel(messages=iter([AIMessage(content="first answer"), AIMessage(content="second answer")]), delay=0.05, calls=[]))
    conversation = await Conversation.objects.acreate(user=user_a)
    tab_one = await connect(conversation.pk, user_a, route="plain")
    tab_two = await connect(conversation.pk, user_a, route="plain")
    await receive_until(tab_one, "history")
    await receive_until(tab_two, "history")

    await tab_one.send_json_to({"type": "user_message", "text": "from tab one"})
    await receive_until(tab_one, "stream_start")
    await tab_two.send_json_to({"type": "user_message", "text": "from tab two"})
    seen_by_one, seen_by_two = await asyncio.gather(both_turns(tab_one), both_turns(tab_two))

    # Both tabs see both turns live (tab two's message is stored once tab one's turn ended).
    def texts(frames):
        return [f["message"]["text"] for f in frames if f["type"] in ("message", "stream_end")]

    assert texts(seen_by_one) == ["first answer", "from tab two", "second answer"]
    assert texts(seen_by_two) == ["from tab one", "first answer", "from tab two", "second answer"]
    assert "".join(f["text"] for f in seen_by_two if f["type"] == "stream_delta") == "first answersecond answer"

    assert await stored(conversation) == [
        ("human", "from tab one", "complete"),
        ("ai", "first answer", "complete"),
        ("human", "from tab two", "complete"),
        ("ai", "second answer", "complete"),
    ]
    # The second reply was built from the whole first turn, not from a half-written history.
    assert [(m.type, m.content) for m in model.calls[1]] == [
        ("human", "from tab one"),
        ("ai", "first answer"),
        ("human", "from tab two"),
    ]
    assert not await ThreadLock.objects.exclude(token="").aexists()  # every lock released
    await tab_one.disconnect()
    await tab_two.disconnect()


async def test_a_lock_left_by_a_dead_worker_is_taken_over_once_it_expires(user_a, use_model):
    use_model(fake_model("after the crash"))
    conversation = await Conversation.objects.acreate(user=user_a)
    await ThreadLock.objects.acreate(key=f"{conversation.pk}:{user_a.pk}:", token="dead", expires_at=timezone.now() - timedelta(seconds=1))
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "anyone?"})
    assert (await receive_until(communicator, "stream_end"))[-1]["message"]["text"] == "after the crash"
    await communicator.disconnect()


async def test_a_turn_waiting_too_long_for_another_gets_a_busy_error_and_stores_nothing(user_a, use_model, settings):
    settings.PYHUB_AI_TURN_LOCK_WAIT = 0.2
    use_model(fake_model("unused"))
    conversation = await Conversation.objects.acreate(user=user_a)
    await ThreadLock.objects.acreate(key=f"{conversation.pk}:{user_a.pk}:", token="other", expires_at=timezone.now() + timedelta(minutes=1))
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "hello?"})
    assert (await communicator.receive_json_from())["code"] == "conversation_busy"
    assert await ConversationMessage.objects.acount() == 0
    await communicator.disconnect()


async def test_each_turn_pushes_the_conversation_expiry_back_when_a_ttl_is_set(user_a, use_model, settings):
    settings.PYHUB_AI_CONVERSATION_TTL = timedelta(days=30)
    use_model(fake_model("ok"))
    conversation = await Conversation.objects.acreate(user=user_a)
    assert conversation.expires_at is None
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    await communicator.send_json_to({"type": "user_message", "text": "hi"})
    await receive_until(communicator, "stream_end")
    await communicator.disconnect()

    await conversation.arefresh_from_db()
    assert timedelta(days=29, hours=23) < conversation.expires_at - timezone.now() <= timedelta(days=30)


@pytest.mark.parametrize(
    "include_failed, expected",
    [
        (False, [("human", "question"), ("human", "go on")]),
        (True, [("human", "question"), ("ai", "cut off"), ("human", "go on")]),
    ],
)
async def test_failed_replies_go_into_the_next_prompt_only_when_the_setting_says_so(user_a, use_model, settings, include_failed, expected):
    settings.PYHUB_AI_HISTORY_INCLUDE_FAILED = include_failed
    conversation = await Conversation.objects.acreate(user=user_a)
    await ConversationMessage.objects.abulk_create(
        [
            ConversationMessage.from_message(HumanMessage(content="question"), conversation=conversation, user=user_a),
            ConversationMessage.from_message(AIMessage(content="cut off"), conversation=conversation, user=user_a, status="interrupted"),
        ]
    )
    model = use_model(fake_model("ok"))
    communicator = await connect(conversation.pk, user_a, route="plain")
    history = (await receive_until(communicator, "history"))[-1]
    assert [m["status"] for m in history["messages"]] == ["complete", "interrupted"]  # shown either way
    await communicator.send_json_to({"type": "user_message", "text": "go on"})
    await receive_until(communicator, "stream_end")
    await communicator.disconnect()
    assert [(m.type, m.content) for m in model.calls[0]] == expected


async def test_a_turn_cancelled_while_taking_the_lock_does_not_leave_it_held(monkeypatch):
    from pyhub_ai import locks

    taken = asyncio.Event()
    real_try_acquire = locks._try_acquire

    async def slow_try_acquire(key, token):
        acquired = await real_try_acquire(key, token)  # the lock is taken in the database ...
        taken.set()
        await asyncio.sleep(10)  # ... and the task is cancelled before it learns so
        return acquired

    monkeypatch.setattr(locks, "_try_acquire", slow_try_acquire)

    async def take():
        async with locks.thread_lock("1:2:", wait=5):
            pass

    task = asyncio.create_task(take())
    await taken.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await ThreadLock.objects.exclude(token="").aexists()


async def test_a_long_turn_keeps_its_lock_renewed_and_releases_it_at_the_end(settings):
    from pyhub_ai import locks

    settings.PYHUB_AI_TURN_LOCK_LEASE = 1  # renewed every third of a second
    async with locks.thread_lock("1:2:", wait=5) as lease:
        taken = (await ThreadLock.objects.aget(key="1:2:", token=lease.token)).expires_at
        await asyncio.sleep(0.8)
        renewed = (await ThreadLock.objects.aget(key="1:2:", token=lease.token)).expires_at
    assert renewed > taken
    assert not await ThreadLock.objects.exclude(token="").aexists()
