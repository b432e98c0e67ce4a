"""Many tabs of one thread: the tabs that were open keep working, however many join.

Each tab that joins a thread announces itself to the thread's group, and every tab already
there answers it directly. With many tabs the newcomer's channel fills up (the channel layer's
``capacity``; 100 messages by default, reached by a few dozen tabs joining at once); an
answer that does not fit must not crash the tab that sent it.
"""
from __future__ import annotations

import pytest

from example.models import LLMChatRoom

from .conftest import fake_model
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)

TABS = 8


async def test_tabs_keep_working_when_a_newcomers_channel_is_full(user_a, use_model, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 3}}}
    use_model(fake_model(*["hello"] * (TABS + 2)))
    room = await LLMChatRoom.objects.acreate()
    first = await connect(room.conversation_id, user_a)
    await receive_until(first, "stream_end")  # the thread's starter
    tabs = [first]
    for _ in range(TABS - 1):
        tab = await connect(room.conversation_id, user_a)
        await receive_until(tab, "history")
        tabs.append(tab)

    await first.send_json_to({"type": "user_message", "text": "still there?"})

    frames = await receive_until(first, "stream_end")
    assert frames[-1]["message"]["text"] == "hello"
    for tab in tabs:
        await tab.disconnect(timeout=1)
