"""The ASGI application of the websocket load benchmark (bench/ws_load.py), served by daphne:

    DJANGO_SETTINGS_MODULE=bench.load_settings python -m daphne \\
        -e tcp:port=P:interface=127.0.0.1:backlog=2048 bench.load_asgi:application

Two websocket routes, no HTTP:

* ``ws/bench/chat/<int:conversation_pk>/``: ``BenchChatConsumer``, a subclass of
  ``pyhub_ai.consumers.AgentChatConsumer`` that lets anonymous visitors in (each connection has
  no session, so it gets a private thread of the owner-less conversation, and counts as its own
  visitor for the turn rate limit) and answers with
  ``PacedFakeChatModel``: ``PYHUB_AI_BENCH_LOAD_TOKENS`` tokens (50), one every
  ``PYHUB_AI_BENCH_LOAD_PACE`` seconds (0.02), then a last chunk with usage metadata.
* ``ws/bench/bare/``: ``BareStreamConsumer``, the baseline: a bare channels
  ``AsyncJsonWebsocketConsumer`` that sends the same frames (``welcome``, an empty ``history``,
  then per ``user_message``: ``message``, ``stream_start``, the same tokens at the same pace
  as ``stream_delta``, ``stream_end``) and stores nothing. What this stack can do at best.
* ``ws/bench/bare-model/``: ``BareModelStreamConsumer``, the second baseline: the same, with the
  tokens streamed by ``PacedFakeChatModel`` through LangChain's ``astream``.
"""
from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.load_settings")
django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402
from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult  # noqa: E402

from pyhub_ai.consumers import AgentChatConsumer  # noqa: E402
from pyhub_ai.usage import Visitor  # noqa: E402

#: Experiments, not used by `make bench`: PYHUB_AI_BENCH_LOAD_VARIANT=nogroup makes the chat
#: consumer skip its thread's channel-layer group (no multi-tab relay), to measure what it costs.
VARIANTS = set(filter(None, os.environ.get("PYHUB_AI_BENCH_LOAD_VARIANT", "").split(",")))
TOKENS: int = settings.PYHUB_AI_BENCH_LOAD_TOKENS
PACE: float = settings.PYHUB_AI_BENCH_LOAD_PACE
_WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jolly vexed zebras".split()
#: The reply, token by token (about 5 characters each, like a real model's tokens).
TOKEN_TEXTS = [_WORDS[i % len(_WORDS)] + " " for i in range(TOKENS)]
REPLY = "".join(TOKEN_TEXTS)


def _usage(messages: list[BaseMessage]) -> dict[str, int]:
    input_tokens = sum(len(m.text.split()) for m in messages)
    return {"input_tokens": input_tokens, "output_tokens": TOKENS, "total_tokens": input_tokens + TOKENS}


class PacedFakeChatModel(BaseChatModel):
    """Streams ``TOKENS`` tokens natively, ``pace`` seconds apart, then a usage chunk."""

    pace: float = PACE

    @property
    def _llm_type(self) -> str:
        return "pyhub-ai-bench-paced"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=REPLY, usage_metadata=_usage(messages)))])

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        for text in TOKEN_TEXTS:
            await asyncio.sleep(self.pace)
            yield ChatGenerationChunk(message=AIMessageChunk(content=text))
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=_usage(messages)))


MODEL = PacedFakeChatModel()


class BenchChatConsumer(AgentChatConsumer):
    """The app's consumer, open to anonymous visitors, answered by the paced fake model."""

    llm_model = "openai:gpt-4o-mini"  # never built: get_llm() returns the fake model

    async def can_accept(self) -> bool:
        return True

    def get_llm(self) -> BaseChatModel:
        return MODEL

    def get_usage_visitor(self) -> Visitor:
        """Each connection is a different visitor (all come from 127.0.0.1 without a session,
        which the app would count as one address); the limits are still checked, in the cache,
        for every turn."""
        key = self.get_visitor_key()
        return Visitor(session=key, address=key)  # no address: every connection would share "address:unknown"

    if "nogroup" in VARIANTS:

        async def join_thread_group(self) -> None:
            pass


class BareStreamConsumer(AsyncJsonWebsocketConsumer):
    """The baseline: the same frames at the same pace, nothing stored, no LangChain."""

    async def connect(self) -> None:
        await self.accept()
        await self.send_json({"type": "welcome", "protocol": 1, "conversation": "bare", "max_message_length": 32000})
        await self.send_json({"type": "history", "messages": [], "has_more": False, "before": None})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "user_message" or not isinstance(content.get("text"), str):
            await self.send_json({"type": "error", "code": "invalid_frame", "message": "Unknown message type."})
            return
        await self.answer(content["text"])

    async def answer(
        self, question: str, turn_id: str = "", human_id: int = 1, ai_id: int = 2, store: Callable[[str], Awaitable[Any]] | None = None
    ) -> None:
        """The turn's frames: the question, then the reply as it streams. ``store(reply)`` (if
        given) runs before ``stream_end``, as the app stores a reply before it says it ended."""
        turn_id = turn_id or str(uuid.uuid4())
        human = {"id": human_id, "role": "human", "text": question, "status": "complete", "created_at": None, "turn_id": turn_id}
        await self.send_json({"type": "message", "message": human})
        await self.send_json({"type": "stream_start", "turn_id": turn_id, "message_id": ai_id})
        loop, interval, last, texts, unsent = asyncio.get_running_loop(), self.get_delta_interval(), 0.0, [], []
        async for text in self.tokens(question):
            texts.append(text)
            unsent.append(text)
            if (now := loop.time()) - last >= interval:  # interval 0: one frame per token
                last = now
                await self.send_json({"type": "stream_delta", "turn_id": turn_id, "text": "".join(unsent)})
                unsent.clear()
        if unsent:
            await self.send_json({"type": "stream_delta", "turn_id": turn_id, "text": "".join(unsent)})
        if store is not None:
            await store("".join(texts))
        ai = {"id": ai_id, "role": "ai", "text": "".join(texts), "status": "complete", "created_at": None, "turn_id": turn_id}
        await self.send_json({"type": "stream_end", "turn_id": turn_id, "message": ai})

    def get_delta_interval(self) -> float:
        """Seconds between two ``stream_delta`` frames (tokens in between share one); 0 here."""
        return 0.0

    async def tokens(self, text: str) -> AsyncIterator[str]:
        """The reply's tokens: ``TOKEN_TEXTS``, ``PACE`` seconds apart."""
        for token in TOKEN_TEXTS:
            await asyncio.sleep(PACE)
            yield token


class BareModelStreamConsumer(BareStreamConsumer):
    """The second baseline: the bare consumer, but the tokens come from ``PacedFakeChatModel``
    through LangChain's ``astream``, as in any consumer built on a LangChain model. What this
    stack can do at best with the model in the loop; stores nothing."""

    async def tokens(self, text: str) -> AsyncIterator[str]:
        async for chunk in MODEL.astream([HumanMessage(content=text)]):
            if chunk.text:
                yield chunk.text


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/bench/chat/<int:conversation_pk>/", BenchChatConsumer.as_asgi()),
                path("ws/bench/bare/", BareStreamConsumer.as_asgi()),
                path("ws/bench/bare-model/", BareModelStreamConsumer.as_asgi()),
            ]
        ),
    }
)

