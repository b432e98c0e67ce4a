"""Model choice (``llm_model_choices``): offered in the welcome frame, chosen by a frame,
validated on the server, stored on the conversation per thread, used by the next turns."""
from __future__ import annotations

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from pyhub_ai.consumers import AgentChatConsumer
from pyhub_ai.models import Conversation, ConversationMessage
from pyhub_ai.specs import LLMModel

from .conftest import fake_model
from .test_tutorial_consumer import receive_until

pytestmark = pytest.mark.django_db(transaction=True)


class ChoosingConsumer(AgentChatConsumer):
    llm_model = LLMModel.OPENAI_GPT_4O_MINI
    llm_model_choices = [LLMModel.OPENAI_GPT_4O_MINI, (LLMModel.OPENAI_GPT_4O, "GPT-4o (best)"), "offline:demo"]


class FixedConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"


application = URLRouter([
    path("ws/choose/<int:conversation_pk>/", ChoosingConsumer.as_asgi()),
    path("ws/fixed/<int:conversation_pk>/", FixedConsumer.as_asgi()),
])


@pytest.fixture
def models_asked(monkeypatch):
    """The model each turn asked ``get_chat_model`` for; every turn answers with a fake model."""
    asked = []

    def get_chat_model(model, **kwargs):
        asked.append(model.value if isinstance(model, LLMModel) else model)
        return fake_model("Hi.")

    monkeypatch.setattr("pyhub_ai.mixins.llm.get_chat_model", get_chat_model)
    return asked


async def open_tab(conversation, user, route="choose"):
    communicator = WebsocketCommunicator(application, f"/ws/{route}/{conversation.pk}/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    frames = await receive_until(communicator, "history")
    return communicator, frames[0]


async def say(communicator, text="hello"):
    await communicator.send_json_to({"type": "user_message", "text": text})
    return await receive_until(communicator, "stream_end")


async def test_the_welcome_frame_offers_the_choices_and_the_current_model(user_a):
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, welcome = await open_tab(conversation, user_a)

    assert welcome["models"] == [
        {"value": "openai:gpt-4o-mini", "label": "gpt-4o-mini"},
        {"value": "openai:gpt-4o", "label": "GPT-4o (best)"},
        {"value": "offline:demo", "label": "demo"},
    ]
    assert welcome["model"] == "openai:gpt-4o-mini"
    await tab.disconnect()


async def test_a_consumer_without_choices_offers_none(user_a):
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, welcome = await open_tab(conversation, user_a, route="fixed")

    assert "models" not in welcome and "model" not in welcome
    await tab.send_json_to({"type": "select_model", "model": "openai:gpt-4o"})
    error = await tab.receive_json_from()
    assert error["type"] == "error" and error["code"] == "invalid_model"
    await tab.disconnect()


async def test_a_chosen_model_answers_the_next_turns_and_every_tab_hears_of_it(user_a, models_asked):
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, _ = await open_tab(conversation, user_a)
    other_tab, _ = await open_tab(conversation, user_a)

    await say(tab)
    await tab.send_json_to({"type": "select_model", "model": "openai:gpt-4o"})
    assert await tab.receive_json_from() == {"type": "model_selected", "model": "openai:gpt-4o"}
    assert (await receive_until(other_tab, "model_selected"))[-1]["model"] == "openai:gpt-4o"
    await say(tab)
    await receive_until(other_tab, "stream_end")  # the other tab saw that turn
    await say(other_tab)  # and its own next turn uses the new model too

    assert models_asked == ["openai:gpt-4o-mini", "openai:gpt-4o", "openai:gpt-4o"]
    replies = [row async for row in ConversationMessage.objects.filter(conversation=conversation, role="ai").order_by("pk")]
    assert [row.message.response_metadata["pyhub_ai_model"] for row in replies] == [
        "openai:gpt-4o-mini", "openai:gpt-4o", "openai:gpt-4o",
    ]  # fmt: skip
    await tab.disconnect()
    await other_tab.disconnect()

    # Stored on the conversation: a new connection starts with the choice.
    tab, welcome = await open_tab(conversation, user_a)
    assert welcome["model"] == "openai:gpt-4o"
    await tab.disconnect()


@pytest.mark.parametrize("model", ["openai:gpt-5", "anthropic:claude", "", 42, None, "x" * 500])
async def test_a_model_not_offered_is_refused_and_nothing_changes(user_a, model):
    conversation = await Conversation.objects.acreate(user=user_a)
    tab, _ = await open_tab(conversation, user_a)

    await tab.send_json_to({"type": "select_model", "model": model})
    error = await tab.receive_json_from()

    assert (error["type"], error["code"]) == ("error", "invalid_model")
    await conversation.arefresh_from_db()
    assert conversation.metadata == {}
    await tab.disconnect()


async def test_in_a_shared_room_each_user_chooses_for_their_own_thread(user_a, user_b, models_asked):
    room = await Conversation.objects.acreate()  # owner-less: a private thread per user
    alice, _ = await open_tab(room, user_a)
    bob, _ = await open_tab(room, user_b)

    await alice.send_json_to({"type": "select_model", "model": "offline:demo"})
    await receive_until(alice, "model_selected")
    await say(bob)
    await say(alice)

    assert models_asked == ["openai:gpt-4o-mini", "offline:demo"]
    await alice.disconnect()
    await bob.disconnect()
