"""A chat page left open and quiet keeps working: the connection survives idle periods.

Channels' Redis layer waits for group messages with ``BZPOPMIN`` and a 5-second server-side
timeout, again and again, while the connection is idle. The Redis client must not give up on
that read before the server answers.
"""
from __future__ import annotations

import asyncio

import pytest
from django.conf import settings as django_settings

from pyhub_ai.models import Conversation

from .conftest import fake_model
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_LAYER = "redis" in django_settings.CHANNEL_LAYERS["default"]["BACKEND"].lower()

#: Longer than one poll of channels-redis (``RedisChannelLayer.brpop_timeout``, 5 s).
IDLE_SECONDS = 7


async def test_a_connection_idle_longer_than_a_channel_layer_poll_still_answers(user_a, use_model):
    use_model(fake_model("still here"))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")

    await asyncio.sleep(IDLE_SECONDS)

    await communicator.send_json_to({"type": "user_message", "text": "are you there?"})
    frames = await receive_until(communicator, "stream_end", timeout=5)
    assert frames[-1]["message"]["text"] == "still here"
    await communicator.disconnect(timeout=1)
