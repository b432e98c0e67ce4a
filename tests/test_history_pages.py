"""The page shows the whole conversation: the latest page first, older pages on request."""
from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from pyhub_ai.llm import OfflineChatModel
from pyhub_ai.models import Conversation, ConversationMessage

from .test_tutorial_consumer import connect, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


async def test_older_pages_come_by_cursor_until_the_whole_thread_was_shown(user_a, use_model, settings):
    settings.PYHUB_AI_HISTORY_PAGE_SIZE = 4
    conversation = await Conversation.objects.acreate(user=user_a)
    await ConversationMessage.objects.abulk_create(
        [
            ConversationMessage.from_message(
                HumanMessage(content=f"message {i}") if i % 2 == 0 else AIMessage(content=f"message {i}"),
                conversation=conversation,
                user=user_a,
            )
            for i in range(10)
        ]
    )
    communicator = await connect(conversation.pk, user_a, route="plain")
    pages = [(await receive_until(communicator, "history"))[-1]]
    while pages[-1]["has_more"]:
        await communicator.send_json_to({"type": "load_history", "before": pages[-1]["messages"][0]["id"]})
        pages.append(await communicator.receive_json_from())

    assert [[m["text"].split()[1] for m in page["messages"]] for page in pages] == [
        ["6", "7", "8", "9"],
        ["2", "3", "4", "5"],
        ["0", "1"],
    ]
    assert [page["before"] for page in pages[1:]] == [pages[0]["messages"][0]["id"], pages[1]["messages"][0]["id"]]
    await communicator.disconnect()


async def test_the_reply_usage_is_stored_and_added_to_the_conversation_totals(user_a, use_model):
    use_model(OfflineChatModel())
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    for text in ("one two three", "four five"):
        await communicator.send_json_to({"type": "user_message", "text": text})
        await receive_until(communicator, "stream_end")
    await communicator.disconnect()

    replies = [row.message async for row in ConversationMessage.objects.filter(conversation=conversation, role="ai")]
    usage = [reply.usage_metadata for reply in replies]
    assert all(u and u["output_tokens"] > 0 for u in usage)
    await conversation.arefresh_from_db()
    assert conversation.input_tokens == sum(u["input_tokens"] for u in usage)
    assert conversation.output_tokens == sum(u["output_tokens"] for u in usage)
