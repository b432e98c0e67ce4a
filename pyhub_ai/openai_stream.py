"""The lighter streaming path for ``ChatOpenAI`` (any OpenAI-compatible server).

Part of the model layer (``llm.py``): ``llm.reply_stream()`` calls ``openai_reply_stream()``
once per model call of a turn (``ChatMixin.stream_reply``, and each step of
``AgentMixin.produce_reply``); ``None`` means the standard path, ``ChatOpenAI.astream``.

Why it exists (measured 2026-11-29/30, 2 cores, a local OpenAI-compatible server, CPU of the
client per 200-token reply): a minimal asyncio HTTP client 2.8 ms; the openai SDK's
``chat.completions.create(stream=True)`` 22 ms; ``ChatOpenAI.astream`` 33 ms. The difference is
work that produces nothing the app uses:

* the SDK's type-driven transform of the request body (``openai._utils._transform``), which
  walks every message and returns the same body;
* a pydantic ``ChatCompletionChunk`` per server-sent event;
* LangChain's callback run and an ``AIMessageChunk`` per event (``BaseChatModel.astream``),
  which is why this path is only taken when no callback handler or tracer would see the call;
* httpx2's default transport (httpcore2 and h11, with anyio cancel scopes around every read)
  and the SDK's line-by-line SSE decoder: skipping the three above left 8.9 ms, of which
  reading and decoding the body were most; ``lean_http.py`` reads the bytes and
  ``_EventDecoder`` decodes them (the same model client, 12.6 → 5.7–6.4 ms in one run against
  a floor of 3.9–5.1 ms; ``bench/results/production.md`` has the figures through the websocket).

What stays the same as ``ChatOpenAI.astream``, so the stored message and the frames are too:

* the request: LangChain builds the payload (``_get_request_payload``, with ``stream_options``
  as ``_astream`` sets it; its conversion of a plain-text message is kept between turns,
  ``_message_dicts``), and the model's own ``AsyncOpenAI`` client sends it with
  ``post()`` — the SDK's documented call for a ready body — or, with the default request
  options, with the ``request()`` that ``post()`` calls, on options made once per client
  (``_post_stream``), so base URL, API key, default headers and query, proxy / custom
  ``http_async_client``, timeout and retries are the model's; ``extra_body`` is merged as the
  SDK merges it. When the model has langchain-openai's default HTTP client (no proxy, no custom
  client), the request goes through a copy of its client on ``lean_http.LeanTransport`` (same
  SSL verification, socket options, timeouts), and ``openai_direct`` sends it to that transport
  itself: the SDK's request, built once per client, with the SDK's retries and errors;
* the events: ``texts()`` and ``_EventDecoder`` do what the SDK's ``AsyncStream`` does for a
  chat completions stream (``cast_to=object``: plain dicts), so ``[DONE]``, error events
  (``APIError``) and transport errors mid-stream (``APIConnectionError``/``APITimeoutError``)
  are raised as before, and langchain-openai's own handlers map them to the same exception
  types;
* the message: LangChain's ``_convert_chunk_to_generation_chunk`` and
  ``add_ai_message_chunks`` build the reply from the events when it is asked for
  (``reply()``), with the metadata and ids ``BaseChatModel.astream`` gives each chunk. The one
  shortcut: consecutive events that carry only text (no tool call, role change, finish reason,
  usage, logprobs or id) are joined into one event first. Merging such chunks only
  concatenates their text (their metadata is the same ``model_provider``), so the result is
  the same message; tool-call deltas, finish reasons, usage and every other field go through
  the conversion one event at a time;
* timeouts: the model's ``stream_chunk_timeout`` (the standard path's wait for each event) is
  ``chunk_timeout``, which ``ChatMixin.stream_reply`` applies with its own per-token deadline
  (the smaller of the two), so a stalled stream still ends with ``TimeoutError``.

``tests/test_fast_stream.py`` runs both paths through the real websocket against
``tests/fake_openai.py`` (closing each connection, and keep-alive with chunked bodies) and
compares stored rows, frames and request bodies; ``tests/test_lean_http.py`` checks the
transport and the event decoding against the SDK's, and the payload against LangChain's.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import json.scanner
import logging
import re
import weakref
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.messages.ai import add_ai_message_chunks
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import RunnableBinding

logger = logging.getLogger(__name__)

try:  # langchain-openai is a dependency, but its private helpers may move: then no fast path
    import openai
    from langchain_core.callbacks.manager import AsyncCallbackManager
    from langchain_core.language_models._utils import _normalize_messages
    from langchain_core.utils.utils import LC_ID_PREFIX
    from langchain_core.utils.uuid import uuid7
    from langchain_openai import ChatOpenAI
    from langchain_openai.chat_models._compat import _convert_from_v1_to_chat_completions
    from langchain_openai.chat_models.base import (
        _convert_message_to_dict,
        _handle_openai_api_error,
        _handle_openai_bad_request,
    )
    from openai import AsyncStream
    from openai._base_client import make_request_options
    from openai._models import FinalRequestOptions
    from openai._httpx2 import request_exceptions, timeout_exceptions

    from .lean_http import body_chunks, lean_client_for
    from .openai_direct import chat_completions_url, direct_sender, prepare_platform

    #: What ``post()`` returns for a stream of plain dicts (``cast_to=object``).
    _STREAM_CLS = AsyncStream[object]
except ImportError as exc:  # pragma: no cover - depends on installed versions
    ChatOpenAI = None
    logger.warning("The fast OpenAI streaming path is off (%s); ChatOpenAI.astream streams every reply.", exc)

#: Keys of ``astream`` kwargs that ``BaseChatModel.astream`` removes before ``_astream``.
_TRACING_KWARGS = ("ls_structured_output_format", "structured_output_format")
#: Model names that ``ChatOpenAI`` treats as o-series (system messages sent as ``developer``).
_O_SERIES = re.compile(r"^o\d")
#: The message classes whose plain-text instances ``_message_dicts`` converts once.
_PLAIN_KINDS = frozenset({HumanMessage, AIMessage, SystemMessage})
#: Converted plain messages by (class, text, name); emptied when it holds ``_PLAIN_DICTS_MAX``.
_PLAIN_DICTS: dict[tuple[type, str, str | None], dict[str, Any]] = {}
_PLAIN_DICTS_MAX = 4096
#: Seconds to read what follows ``[DONE]`` (the end of the body), so the connection is reused.
_DRAIN_SECONDS = 1.0
#: What ``json.loads`` calls to decode a value: ``_EventDecoder`` calls it straight, where
#: ``json.loads(data)`` runs four Python functions around it for every event (3 Python calls per
#: token less; a JSON value with whitespace around it, or no value, still goes to ``json.loads``).
_scan_json = json.scanner.make_scanner(json.JSONDecoder())
#: Options of the SDK's ``create()`` that are not part of the JSON body.
_REQUEST_OPTIONS = ("extra_headers", "extra_query", "timeout")


def openai_reply_stream(llm: Any, prompt: list[BaseMessage]) -> OpenAIReplyStream | None:
    """The fast stream of ``llm``'s reply to ``prompt``, or ``None`` when only the standard
    path does what ``llm.astream(prompt)`` would: ``llm`` is not a plain ``ChatOpenAI`` (or one
    bound with ``bind``/``bind_tools``), or it has callbacks, tracing, a rate limiter, the
    Responses API, structured output, response headers, the LangSmith gateway or content
    blocks (``output_version="v1"``) configured."""
    if ChatOpenAI is None:
        return None
    kwargs: dict[str, Any] = {}
    if isinstance(llm, RunnableBinding):
        if llm.config or llm.config_factories or llm.custom_input_type or llm.custom_output_type:
            return None
        kwargs, llm = dict(llm.kwargs), llm.bound
    if type(llm) is not ChatOpenAI:
        return None
    if (
        llm.rate_limiter is not None
        or llm.disable_streaming
        or llm.include_response_headers
        or llm.output_version not in (None, "v0")
        or llm._uses_gateway
        or llm.root_async_client is None
        or any(key in kwargs for key in _TRACING_KWARGS)
    ):
        return None
    if AsyncCallbackManager.configure(None, llm.callbacks, llm.verbose, None, llm.tags, None, llm.metadata).handlers:
        return None  # a handler or tracer (LangSmith, set_debug, ...) must see every event
    stop = kwargs.pop("stop", None)
    stream_usage = kwargs.pop("stream_usage", None)
    kwargs["stream"] = True
    stream_usage = llm._should_stream_usage(stream_usage, **kwargs)
    if stream_usage:
        kwargs["stream_options"] = {"include_usage": stream_usage}
    messages = list(prompt)
    for message in messages:  # text needs no normalizing (a loop: any() costs a call per message)
        if type(message.content) is not str:
            messages = _normalize_messages(messages)
            break
    payload = _request_payload(llm, messages, stop, kwargs)
    if "response_format" in payload or llm._use_responses_api(payload):
        return None
    return OpenAIReplyStream(llm, payload)


def _request_payload(llm: Any, messages: list[BaseMessage], stop: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``llm._get_request_payload(messages, stop=stop, **kwargs)``, with the messages converted
    by ``_message_dicts`` (plain-text messages converted once, not every turn). An o-series
    model, whose system messages ``ChatOpenAI`` sends as ``developer``, gets LangChain's own
    conversion."""
    if _O_SERIES.match(llm.model_name or ""):
        return llm._get_request_payload(messages, stop=stop, **kwargs)
    payload = llm._get_request_payload([], stop=stop, **kwargs)
    payload["messages"] = _message_dicts(messages)
    return payload


def _message_dicts(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    """What ``BaseChatOpenAI._get_request_payload`` makes of ``messages`` for Chat Completions.

    A history is sent again with every turn, and converting an ``AIMessage`` walks its text
    character by character (langchain-openai looks for audio blocks in ``content``): about
    0.5 ms of the event loop per turn for a window of 50 stored messages (bench profile,
    2026-11-30), more for long replies. A plain message (exactly ``HumanMessage``,
    ``AIMessage`` or ``SystemMessage``, text content, a name or none, no other fields that the
    conversion reads) converts to a dict that only its class, text and name decide, so that
    dict is kept in ``_PLAIN_DICTS`` and copied; every other message is converted each time."""
    dicts = []
    for message in messages:
        kind = type(message)
        if (
            kind in _PLAIN_KINDS
            and type(message.content) is str
            and not message.additional_kwargs
            and not (kind is AIMessage and (message.tool_calls or message.invalid_tool_calls))
        ):
            key = (kind, message.content, message.name)
            converted = _PLAIN_DICTS.get(key)
            if converted is None:
                if len(_PLAIN_DICTS) >= _PLAIN_DICTS_MAX:
                    _PLAIN_DICTS.clear()
                converted = _PLAIN_DICTS[key] = _convert_message(message)
            dicts.append(dict(converted))
        else:
            dicts.append(_convert_message(message))
    return dicts


def _convert_message(message: BaseMessage) -> dict[str, Any]:
    """One message as ``BaseChatOpenAI._get_request_payload`` converts it."""
    if isinstance(message, AIMessage):
        return _convert_message_to_dict(_convert_from_v1_to_chat_completions(message))
    return _convert_message_to_dict(message)


class OpenAIReplyStream:
    """One streamed reply: iterate ``texts()`` for the text of each event, then ``reply()``."""

    def __init__(self, llm: Any, payload: dict[str, Any]) -> None:
        self.llm = llm
        options = {key: payload.pop(key) for key in _REQUEST_OPTIONS if key in payload}
        extra_body = payload.pop("extra_body", None)
        self.body = {**payload, **extra_body} if extra_body else payload
        self.options = make_request_options(**options, security={"bearer_auth": True})
        self.run_id = f"{LC_ID_PREFIX}-{uuid7()}"
        #: Seconds to wait for each event (``ChatOpenAI.stream_chunk_timeout``).
        self.chunk_timeout: float | None = llm.stream_chunk_timeout or None
        # Converted chunks, and lists of texts: runs of text-only events, converted in reply().
        self._parts: list[ChatGenerationChunk | list[str]] = []
        self._default_class: type = AIMessageChunk
        self._finished = False

    async def texts(self) -> AsyncIterator[str]:
        """The text of every event as it arrives (``""`` for events without text).

        The body's bytes come straight from ``body_chunks()`` and ``_EventDecoder`` decodes them
        with plain calls: every async generator between the socket and the loop that relays the
        texts costs two Python calls per event (resumed when bytes arrive, asked for the next).
        With that, ``lean_http`` reading the ``StreamReader`` itself, the C JSON scanner and the
        stream read by a task of its own (``ChatMixin.stream_reply``), the app's event loop
        makes 49.7 Python calls per token of a 200-token turn, where it made 66.7 and the
        floor's minimal client makes 62.5 (``bench.turn_calls``, 2026-11-30)."""
        try:
            response = await _open_response(lean_client_for(self.llm.root_async_client), self.body, self.options)
            try:
                chunks = body_chunks(response)
                decoder = _EventDecoder(response.request)
                try:
                    while not decoder.done:
                        for event in decoder.feed(await anext(chunks, None)):
                            text = self._add(event)
                            if text is not None:
                                yield text
                    if decoder.error is not None:
                        raise decoder.error
                    await _drain(chunks)
                except timeout_exceptions() as exc:
                    raise openai.APITimeoutError(request=response.request) from exc
                except request_exceptions() as exc:
                    raise openai.APIConnectionError(request=response.request) from exc
            finally:
                await response.aclose()
        except openai.BadRequestError as exc:
            _handle_openai_bad_request(exc)
        except openai.APIError as exc:
            _handle_openai_api_error(exc)
        self._finished = True

    def _add(self, event: dict[str, Any]) -> str | None:
        """Add one event to the reply, and return its text (``None`` when LangChain's conversion
        makes no chunk of it, as ``ChatOpenAI._astream`` skips it).

        An event that carries nothing but text (no tool call, finish reason, usage, logprobs or
        id, and no role but the assistant's: a stream's first event, the assistant's role with
        empty text, is one) becomes ``AIMessageChunk(content=text)`` with the metadata every
        chunk has, so a run of them is kept as their texts and converted once, joined, in
        ``reply()``; any other event is converted now."""
        parts = self._parts
        choices = event.get("choices")
        if choices and not event.get("usage") and not event.get("type"):
            choice = choices[0]
            delta = choice.get("delta")
            if not (
                delta is None
                or choice.get("finish_reason")
                or choice.get("logprobs")
                or delta.get("tool_calls")
                or delta.get("function_call")
                or delta.get("id")
                or delta.get("role") not in (None, "assistant")
            ):
                text = delta.get("content")
                if text is None:
                    text = ""
                if type(text) is str:
                    if parts and type(parts[-1]) is list:
                        parts[-1].append(text)
                    else:
                        parts.append([text])
                    return text
        chunk = self.llm._convert_chunk_to_generation_chunk(event, self._default_class, {})
        if chunk is None:
            return None
        self._default_class = chunk.message.__class__  # as ChatOpenAI._astream (no response headers: no base info)
        parts.append(chunk)
        return chunk.text

    def reply(self) -> AIMessageChunk | None:
        """The reply streamed so far, as ``add_ai_message_chunks`` of the chunks that
        ``ChatOpenAI.astream`` would have yielded.

        Once the stream has ended, ``astream`` yields one more chunk: empty, with
        ``chunk_position="last"``. Adding an empty chunk changes nothing but the position, so
        the last chunk is marked ``"last"`` instead (one message to build and add less)."""
        messages: list[AIMessageChunk] = []
        for part in self._parts:
            if type(part) is list:
                part = self.llm._convert_chunk_to_generation_chunk(
                    {"choices": [{"index": 0, "delta": {"content": "".join(part)}}]}, AIMessageChunk, {}
                )
            message = part.message
            if message.id is None:
                message.id = self.run_id
            # What BaseChatModel.astream does to each chunk (_gen_info_and_msg_metadata).
            message.response_metadata = {**(part.generation_info or {}), **message.response_metadata}
            messages.append(message)
        if not messages:
            return None
        if self._finished and isinstance(messages[-1], AIMessageChunk):
            messages[-1].chunk_position = "last"
        return add_ai_message_chunks(messages[0], *messages[1:])


#: Per client: its ``base_url`` when the entry was made, and the request options ``post()``
#: would build on it for a body sent with only the default options.
_POST_TEMPLATES: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()


async def _open_response(client: Any, body: dict[str, Any], options: dict[str, Any]) -> Any:
    """The streaming ``httpx2.Response`` to ``body``: sent by ``openai_direct`` when it may
    send it, else by the SDK (``_post_stream``), whose stream closes by closing the response."""
    await prepare_platform(client)
    sender = direct_sender(client, options)
    if sender is not None:
        return await sender.send(body)
    return (await _post_stream(client, body, options)).response


def _post_stream(client: Any, body: dict[str, Any], options: dict[str, Any]) -> Any:
    """``client.post("/chat/completions", cast_to=object, body=body, options=options,
    stream=True, stream_cls=AsyncStream[object])``, called by ``OpenAIReplyStream.texts``.

    ``post()`` builds a ``FinalRequestOptions`` for every request (pydantic defaults copied
    deeply), and the URL is parsed from the relative path twice before httpx2 parses it once
    more: together about 40 µs of the SDK's ``post()`` without the network (235 µs → 195 µs with
    a dummy transport, 2026-11-30). With only the default options (no extra headers, query or
    timeout), the options are made once per client and copied for each request with its body,
    and the path is given as the absolute URL the SDK makes of it (``_prepare_url``: the
    client's ``base_url`` path joined with ``chat/completions``); the SDK's ``request()`` then
    does everything ``post()`` would. Other options go through ``post()``."""
    if options.keys() != {"security"}:
        return client.post(
            "/chat/completions", cast_to=object, body=body, options=options, stream=True, stream_cls=_STREAM_CLS
        )  # fmt: skip
    base_url = client.base_url
    entry = _POST_TEMPLATES.get(client)
    if entry is None or entry[0] is not base_url:
        url = chat_completions_url(client)
        template = FinalRequestOptions.construct(method="post", url=url, json_data=None, content=None, files=None, **options)
        entry = _POST_TEMPLATES[client] = (base_url, template)
    request_options = entry[1].model_copy(update={"json_data": body, "params": {}})
    return client.request(object, request_options, stream=True, stream_cls=_STREAM_CLS)


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows ``[DONE]`` (the end of the body, for ``_DRAIN_SECONDS`` at most), so
    the connection can be kept for the next request (``OpenAIReplyStream.texts``)."""
    with contextlib.suppress(TimeoutError, *request_exceptions()):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for _ in chunks:
                pass


class _EventDecoder:
    """The events of a chat completions stream, decoded from the bytes of each read: what the
    SDK's ``AsyncStream`` yields for it (``cast_to=object``: the JSON of each event), with its
    errors, from fewer objects per event. ``OpenAIReplyStream.texts`` calls ``feed()``.

    The event stream format is WHATWG's: lines end with CR, LF or CRLF; an event's ``data``
    lines are joined with LF; an empty line ends it. Comments and the ``event``, ``id`` and
    ``retry`` fields are skipped: a chat completions stream carries everything in ``data``."""

    def __init__(self, request: Any) -> None:
        self.request = request
        #: Whether the stream ended: ``[DONE]``, the end of the body, or an error.
        self.done = False
        #: What ``feed()`` stopped at, raised by the caller after the events before it: an
        #: ``openai.APIError`` for an event with ``error``, or the JSON's decoding error.
        self.error: Exception | None = None
        self._pending = b""  # the start of a line
        self._skip_lf = False  # the last bytes ended with CR: an LF that follows ends no line
        self._data: list[bytes] = []  # the data lines of the event so far

    def feed(self, chunk: bytes | None) -> list[Any]:
        """The events that ``chunk`` completes; ``None`` is the end of the body (a last event
        that no empty line ended still counts, as the SDK counts it)."""
        if self.done:
            return []
        if chunk is None:
            self.done = True
            chunk = b"\n\n"
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            self._skip_lf = False
        lines = (self._pending + chunk).split(b"\n") if self._pending else chunk.split(b"\n")
        self._pending = lines.pop()
        events = []
        data = self._data
        for line in lines:
            if line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif not line and data:
                raw = data[0] if len(data) == 1 else b"\n".join(data)
                data.clear()
                if raw.startswith(b"[DONE]"):
                    self.done = True
                    break
                try:
                    text = raw.decode()
                    try:
                        event, end = _scan_json(text, 0)
                    except StopIteration:
                        end = -1
                    if end != len(text):  # not one JSON value alone: json.loads decides, with its error
                        event = json.loads(text)
                except ValueError as exc:  # including the text's UnicodeDecodeError
                    self.error = exc
                    self.done = True
                    break
                if type(event) is dict and event.get("error"):
                    self.error = _api_error(event["error"], self.request)
                    self.done = True
                    break
                events.append(event)
        return events


def _api_error(error: Any, request: Any) -> openai.APIError:
    """The ``APIError`` the SDK raises for an event whose ``error`` is ``error``."""
    message = error.get("message") if isinstance(error, dict) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return openai.APIError(message=message, request=request, body=error)
