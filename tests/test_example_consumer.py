"""The tutorial consumer fills its prompt from the room of the conversation it serves."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext

from example.consumers import LanguageTutorChatConsumer
from example.models import LLMChatRoom, RoomConversation
from pyhub_ai.models import Conversation

from .conftest import fake_model
from .routing import application
from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


async def system_prompt_of_first_turn(conversation_pk, user, model) -> str:
    communicator = await connect(conversation_pk, user)
    await receive_until(communicator, "stream_end")
    await communicator.disconnect()
    return model.calls[-1][0].content


async def test_a_rooms_language_situation_and_level_fill_the_prompt(user_a, use_model):
    model = use_model(fake_model("こんにちは"))
    room = await LLMChatRoom.objects.acreate(language="ja", situation="hotel", level="advanced")

    prompt = await system_prompt_of_first_turn(room.conversation_id, user_a, model)

    assert "일본어로 대화를 나눕시다" in prompt
    assert '"호텔에 체크인하는 상황"의 상황으로' in prompt
    assert "일본어 고급에 맞는" in prompt


async def test_the_prompt_is_korean_whatever_the_visitors_language(user_a, use_model):
    model = use_model(fake_model("hola"))
    room = await LLMChatRoom.objects.acreate(language="es", situation="restaurant")
    communicator = WebsocketCommunicator(
        application, f"/ws/example/chat/{room.conversation_id}/", headers=[(b"accept-language", b"en")]
    )
    communicator.scope["user"] = user_a
    await communicator.connect()
    await receive_until(communicator, "stream_end")
    await communicator.disconnect()

    assert "스페인어로 대화를 나눕시다" in model.calls[0][0].content
    assert "레스토랑에서 음식을 주문하는 상황" in model.calls[0][0].content


async def test_a_conversation_started_later_in_a_room_uses_the_rooms_settings(user_a, use_model):
    model = use_model(fake_model("bonjour"))
    room = await LLMChatRoom.objects.acreate(language="fr", level="intermediate")
    conversation = await Conversation.objects.acreate(user=user_a)
    await RoomConversation.objects.acreate(room=room, conversation=conversation)

    prompt = await system_prompt_of_first_turn(conversation.pk, user_a, model)

    assert "프랑스어로 대화를 나눕시다" in prompt and "프랑스어 중급에 맞는" in prompt


async def test_a_conversation_in_no_room_gets_the_tutorials_values(user_a, use_model):
    model = use_model(fake_model("你好"))
    conversation = await Conversation.objects.acreate()

    prompt = await system_prompt_of_first_turn(conversation.pk, user_a, model)

    assert "중국어로 대화를 나눕시다" in prompt and "스타벅스에서 커피를 주문하는 상황" in prompt and "초급" in prompt


async def test_a_conversation_a_user_started_in_a_room_is_closed_to_everyone_else(user_a, user_b, use_model):
    use_model(fake_model("never"))
    room = await LLMChatRoom.objects.acreate()
    conversation = await Conversation.objects.acreate(user=user_a)
    await RoomConversation.objects.acreate(room=room, conversation=conversation)

    for visitor in (user_b, AnonymousUser()):
        communicator = WebsocketCommunicator(application, f"/ws/example/chat/{conversation.pk}/")
        communicator.scope["user"] = visitor
        await communicator.connect()
        output = await communicator.receive_output(timeout=2)
        assert output == {"type": "websocket.close", "code": 4403}
        await communicator.wait()


@pytest.mark.parametrize("started_later", [False, True])
async def test_the_room_is_loaded_with_the_conversation_in_one_query(user_a, started_later):
    room = await LLMChatRoom.objects.acreate(language="de")
    conversation_pk = room.conversation_id
    if started_later:
        conversation_pk = (await Conversation.objects.acreate(user=user_a)).pk
        await RoomConversation.objects.acreate(room=room, conversation_id=conversation_pk)
    consumer = LanguageTutorChatConsumer()
    consumer.scope = {"url_route": {"kwargs": {"conversation_pk": conversation_pk}}, "user": user_a}

    @database_sync_to_async
    def lookup():
        with CaptureQueriesContext(connection) as queries:
            from asgiref.sync import async_to_sync

            conversation = async_to_sync(consumer.aget_conversation)()
            context = consumer.get_llm_prompt_context_data()
        return conversation, context, len(queries)

    conversation, context, query_count = await lookup()

    assert conversation.pk == conversation_pk
    assert consumer.room.pk == room.pk
    assert context["언어"] == "독일어"
    assert query_count == 1
