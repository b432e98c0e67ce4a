"""The ASGI application of the production-path benchmark (bench/prod_load.py), served by daphne
with ``DJANGO_SETTINGS_MODULE=bench.prod_settings`` (the model: ``OPENAI_BASE_URL``, the
benchmark's OpenAI-compatible server, bench/model_server.py). Websocket routes, no HTTP:

* ``ws/prod/chat/<window>/<conversation_pk>/``: ``ProdChatConsumer``, the app's
  ``AgentChatConsumer`` as a user writes it (``llm_model = "openai:gpt-4o-mini"``, the key and
  base URL from settings), open to anonymous visitors; each conversation's thread is seeded with
  ``history_messages(window)`` by the runner, and the prompt window is ``window`` messages.
* ``ws/prod/bare/<client>/<window>/``: ``BareClientConsumer``, the baselines: a bare channels
  consumer that sends the same frames (``stream_delta`` gathered every
  ``PYHUB_AI_STREAM_DELTA_INTERVAL`` as the app does), stores nothing, and asks the same server
  for a reply to the same prompt (system prompt, ``history_messages(window)``, the user's
  message) with ``client``: ``http`` (a minimal asyncio HTTP client: the floor), ``sdk`` (the
  openai SDK, ``chat.completions.create(stream=True)``) or ``langchain`` (``ChatOpenAI.astream``
  of the model ``get_chat_model()`` builds for the chat consumer); ``http_every`` is the floor
  sending one ``stream_delta`` per token (how the issue's first measurement sent them).
* ``ws/prod/stored/<window>/<conversation_pk>/``: ``StoringClientConsumer``, the floor plus our
  storage: the floor's client and frames, every turn stored in the seeded thread with
  pyhub_ai's history calls, as the app stores it.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
from collections.abc import AsyncIterator
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.prod_settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, messages_to_dict  # noqa: E402

from bench.load_asgi import BareStreamConsumer  # noqa: E402
from pyhub_ai.budgets import subject_of  # noqa: E402
from pyhub_ai.conf import conf  # noqa: E402
from pyhub_ai.consumers import AgentChatConsumer  # noqa: E402
from pyhub_ai.history import DjangoChatMessageHistory, Turn  # noqa: E402
from pyhub_ai.ledger import ModelCall  # noqa: E402
from pyhub_ai.llm import get_chat_model  # noqa: E402
from pyhub_ai.locks import Lease, thread_lock  # noqa: E402
from pyhub_ai.usage import Visitor  # noqa: E402

MODEL = "openai:gpt-4o-mini"
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly and precisely."


def history_messages(window: int) -> list[BaseMessage]:
    """The stored thread the prompt's window is read from: questions of about 80 characters,
    answers of about 600 (a 120-token reply)."""
    messages: list[BaseMessage] = []
    for i in range(window):
        if i % 2 == 0:
            messages.append(HumanMessage(content=f"Question {i // 2 + 1}: how does the quick brown fox jump over the lazy dog?"))
        else:
            messages.append(AIMessage(content=f"Answer {i // 2 + 1}: " + "the quick brown fox jumps over the lazy dog; " * 13))
    return messages


class ProdChatConsumer(AgentChatConsumer):
    """The app's consumer, as a user writes it; open to anonymous visitors, one seeded thread
    per conversation (its visitor key is the conversation's pk). All connections come from
    127.0.0.1 without a session, so the turn rate limit counts them as one visitor:
    bench/prod_settings.py sets a limit far above the benchmark's turns (still checked)."""

    llm_model = MODEL
    llm_system_prompt_template = SYSTEM_PROMPT

    async def can_accept(self) -> bool:
        return True

    def get_visitor_key(self) -> str:
        return f"bench-{self.scope['url_route']['kwargs']['conversation_pk']}"

    def get_history_max_messages(self) -> int:
        return self.scope["url_route"]["kwargs"]["window"]


@cache
def _prompt_dicts(window: int) -> list[dict[str, str]]:
    roles = {"human": "user", "ai": "assistant"}
    return [{"role": "system", "content": SYSTEM_PROMPT}] + [
        {"role": roles[m["type"]], "content": m["data"]["content"]} for m in messages_to_dict(history_messages(window))
    ]


@cache
def _sdk_client() -> Any:
    import openai

    return openai.AsyncOpenAI(api_key=settings.OPENAI_API_KEY, base_url=settings.OPENAI_BASE_URL)


async def http_tokens(window: int, text: str, usage: dict[str, Any] | None = None, kept: dict[str, Any] | None = None) -> AsyncIterator[str]:
    """The floor: one HTTP/1.1 request, the SSE lines read and decoded (the server's token
    counts into ``usage``, when given). On a new connection, or on the one kept in ``kept``
    (when given) from the last request: a server that keeps connections alive sends chunked
    bodies (``bench/model_server.py --keep-alive``), whose end is read to keep the connection."""
    url = urlsplit(settings.OPENAI_BASE_URL)
    body = json.dumps({
        "model": MODEL.split(":")[1], "messages": [*_prompt_dicts(window), {"role": "user", "content": text}],
        "stream": True, "stream_options": {"include_usage": True},
    }).encode()  # fmt: skip
    connection = kept.pop("connection", None) if kept is not None else None
    reader, writer = connection or await asyncio.open_connection(url.hostname, url.port)
    chunked = False
    try:
        writer.write(
            f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {settings.OPENAI_API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )
        while (header := await reader.readline()) not in (b"\r\n", b""):
            chunked = chunked or header.lower() == b"transfer-encoding: chunked\r\n"
        while line := await reader.readline():
            if line.startswith(b"data: "):
                if line.startswith(b"data: [DONE]"):
                    break
                event = json.loads(line[6:])
                choices = event.get("choices")
                if choices and (content := choices[0]["delta"].get("content")):
                    yield content
                elif usage is not None and event.get("usage"):
                    usage.update(event["usage"])
        if chunked and kept is not None:
            await reader.readuntil(b"\r\n0\r\n\r\n")  # the rest of [DONE]'s chunk, and the last chunk
            kept["connection"], writer = (reader, writer), None
    finally:
        if writer is not None:
            writer.close()


async def sdk_tokens(window: int, text: str) -> AsyncIterator[str]:
    stream = await _sdk_client().chat.completions.create(
        model=MODEL.split(":")[1], messages=[*_prompt_dicts(window), {"role": "user", "content": text}],
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


async def langchain_tokens(window: int, text: str) -> AsyncIterator[str]:
    prompt = [SystemMessage(content=SYSTEM_PROMPT), *history_messages(window), HumanMessage(content=text)]
    async for chunk in get_chat_model(MODEL).astream(prompt):
        if chunk.text:
            yield chunk.text


#: The baselines' clients but the floor (``http``, ``http_every``: ``http_tokens``, which keeps its connection).
CLIENTS = {"sdk": sdk_tokens, "langchain": langchain_tokens}


class BareClientConsumer(BareStreamConsumer):
    """The baselines: the app's frames (bench/load_asgi.py's bare consumer, deltas gathered as
    the app gathers them), nothing stored, the reply from the model server."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The floor's connection kept from its last request (a server that keeps them alive).
        self.kept: dict[str, Any] = {}

    def get_delta_interval(self) -> float:
        return 0.0 if self.scope["url_route"]["kwargs"].get("client") == "http_every" else conf.STREAM_DELTA_INTERVAL

    async def disconnect(self, code: int) -> None:
        if connection := self.kept.pop("connection", None):
            connection[1].close()

    def tokens(self, text: str) -> AsyncIterator[str]:
        kwargs = self.scope["url_route"]["kwargs"]
        if kwargs["client"] in ("http", "http_every"):
            return http_tokens(kwargs["window"], text, kept=self.kept)
        return CLIENTS[kwargs["client"]](kwargs["window"], text)


class StoringClientConsumer(BareClientConsumer):
    """The floor plus our storage: the floor (the minimal client, the same frames), and each
    turn stored as the app stores it, with pyhub_ai's own calls: the thread's lock taken with
    the prompt's window read and the question and the reply's placeholder stored
    (``DjangoChatMessageHistory.start_turn``), then the reply, its usage and the ledger's
    record stored and the lock released (``finish_turn``). The prompt sent is the floor's; the
    app's own work (access checks, LangChain, the model client) is left out: the app's CPU
    above this baseline is what its model path and protocol cost."""

    history: DjangoChatMessageHistory | None = None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "user_message" or not isinstance(content.get("text"), str):
            await super().receive_json(content, **kwargs)  # the floor's error frame
            return
        route = self.scope["url_route"]["kwargs"]
        pk, question = route["conversation_pk"], HumanMessage(content=content["text"])
        if self.history is None:  # one per connection, as the app's (it keeps the window it read)
            self.history = DjangoChatMessageHistory(conversation=pk, visitor_key=f"bench-{pk}", max_messages=route["window"])
        history, address = self.history, (self.scope.get("client") or ("",))[0]

        def start(lease: Lease) -> Turn:  # in the transaction that takes the lock, as the app's
            return history.start_turn(question, lease=lease)

        async with thread_lock(history.thread_key, wait=conf.TURN_LOCK_WAIT, on_acquire=start) as lease:
            turn, usage = lease.value, {}
            turn.call = ModelCall(MODEL, [*turn.previous_messages, question], subject_of(Visitor(address=address)))

            async def store(reply: str) -> None:
                usage_metadata = {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0),
                                  "total_tokens": usage.get("total_tokens", 0)}  # fmt: skip
                metadata = {"finish_reason": "stop", "model_name": MODEL.split(":")[1], "model_provider": "openai"}
                await history.afinish_turn(turn, AIMessage(content=reply, usage_metadata=usage_metadata, response_metadata=metadata))

            self.usage = usage
            await self.answer(content["text"], str(turn.turn_id), turn.human.pk, turn.ai.pk, store)

    def tokens(self, text: str) -> AsyncIterator[str]:
        return http_tokens(self.scope["url_route"]["kwargs"]["window"], text, self.usage, self.kept)


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/prod/chat/<int:window>/<int:conversation_pk>/", ProdChatConsumer.as_asgi()),
                path("ws/prod/bare/<str:client>/<int:window>/", BareClientConsumer.as_asgi()),
                path("ws/prod/stored/<int:window>/<int:conversation_pk>/", StoringClientConsumer.as_asgi()),
            ]
        ),
    }
)

# As a deployment's ASGI module does (mysite/asgi.py, docs/deployment.md): the objects loaded so
# far leave the garbage collector's full collections, for every consumer served here alike.
gc.collect()
gc.freeze()
