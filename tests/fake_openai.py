"""A tiny OpenAI-compatible server for tests: ``POST /v1/chat/completions`` on 127.0.0.1.

It runs its own asyncio loop in a thread, so sync tests, async tests and a live daphne child
process (given ``OPENAI_BASE_URL=server.base_url``) can all talk to it::

    with FakeOpenAI(reply="Hello!") as server:
        settings.OPENAI_BASE_URL = server.base_url
        ...
        assert server.requests[0].headers["authorization"] == "Bearer sk-..."

Streaming requests (``"stream": true``) get Server-Sent Events shaped like OpenAI's: a first
chunk with the role, one chunk per word of the reply, a chunk with ``finish_reason``, and, when
``stream_options.include_usage`` is set (``ChatOpenAI(stream_usage=True)`` sets it), a last
chunk with ``usage`` and no choices; then ``data: [DONE]``. Other requests get one
``chat.completion`` object.

``fail_with(status, message)`` makes every later request fail with that status and an OpenAI
error body whose message is ``message``, formatted with ``authorization`` (the request's
Authorization header), so a test can make the provider echo the caller's credentials.
Failures carry ``x-should-retry: false``, so the OpenAI client does not retry them.

A reply can also be a :class:`Reply`, to stream what real servers send besides text: tool calls
whose arguments arrive in pieces, extra delta fields (``refusal``, ``reasoning_content``), a
finish reason, and failures in the middle of the stream (an error event, a dropped connection,
a stall).

By default each connection serves one request and the reply ends when the server closes it
(``Connection: close``). ``keep_alive=True`` serves like api.openai.com instead: one connection
carries request after request, streams are sent with ``Transfer-Encoding: chunked`` and JSON
bodies with ``Content-Length``; ``connections`` counts the connections accepted. With
``ssl_context`` the server speaks HTTPS (``base_url`` says so).
"""
from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MODEL_CREATED = 1_700_000_000


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any


@dataclass
class Failure:
    status: int
    message: str
    times: int | None = None  # then the server answers again (None: until ``succeed()``)
    retry: bool = False  # whether the OpenAI client may retry it (``x-should-retry``)


@dataclass
class ToolCall:
    """A tool call streamed as OpenAI does: id and name first, then the arguments in pieces."""

    name: str
    arguments: str
    id: str = "call_1"


@dataclass
class Reply:
    """A scripted streamed reply. ``*_after`` count the content/argument events sent before it."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    delta_extra: dict = field(default_factory=dict)  # added to every content delta
    finish_reason: str = ""  # default: "tool_calls" with tool calls, else "stop"
    error_after: int | None = None  # then an error event, as OpenAI sends mid-stream
    drop_after: int | None = None  # then the connection is closed without [DONE]
    stall_after: int | None = None  # then nothing more is sent (the connection stays open)


@dataclass
class FakeOpenAI:
    """Answers every completion with the next of ``replies`` (then ``reply``), or fails."""

    reply: str = "Hello from the fake model."
    replies: deque = field(default_factory=deque)
    chunk_delay: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list)
    failure: Failure | None = None
    record: bool = True  # keep every request in ``requests`` (benchmarks turn it off)
    host: str = "127.0.0.1"
    port: int = 0
    keep_alive: bool = False
    ssl_context: ssl.SSLContext | None = None
    connections: int = 0
    set_cookie: str = ""  # a ``Set-Cookie`` header on every streamed reply

    # -- control, from the test's thread ----------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}/v1"

    def answer_with(self, *replies: str) -> None:
        """The next completions answer ``replies``, in order; then ``reply`` again."""
        self.replies.extend(replies)

    def fail_with(self, status: int, message: str, *, times: int | None = None, retry: bool = False) -> None:
        """Fail the next ``times`` requests (all of them: ``None``); with ``retry`` the failures
        let the OpenAI client retry them (after 1 ms: ``retry-after-ms``)."""
        self.failure = Failure(status, message, times, retry)

    def succeed(self) -> None:
        self.failure = None

    def close_connections(self) -> None:
        """Close every open connection, as a server does with idle keep-alive connections."""
        def close() -> None:
            for writer in self._writers:
                writer.close()

        self._loop.call_soon_threadsafe(close)

    def completions(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def start(self) -> FakeOpenAI:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._release = asyncio.Event()
            self._writers: set[asyncio.StreamWriter] = set()
            self._handlers: set[asyncio.Task] = set()
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, self.host, 0, ssl=self.ssl_context))
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("The fake OpenAI server did not start.")
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._release.set()
            self._server.close()
            for writer in self._writers:  # idle keep-alive connections: their handlers end
                writer.transport.abort()
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=5)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- the server, in its own thread ------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        self._handlers.add(task := asyncio.current_task())
        try:
            while (request := await self._read_request(reader)) is not None:
                if self.record:
                    self.requests.append(request)
                if not await self._respond(request, writer) or not self.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._handlers.discard(task)

    async def _read_request(self, reader: asyncio.StreamReader) -> RecordedRequest | None:
        request_line = (await reader.readline()).decode("latin-1").strip()
        if not request_line:
            return None
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        while (line := (await reader.readline()).decode("latin-1").strip()):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", 0)))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        return RecordedRequest(method, path, headers, body)

    async def _respond(self, request: RecordedRequest, writer: asyncio.StreamWriter) -> bool:
        """Answer ``request``; whether the connection is still fit for another request."""
        if not (request.method == "POST" and request.path.endswith("/chat/completions")):
            await self._send_json(writer, 404, {"error": {"message": "Not found", "type": "invalid_request_error"}})
            return True
        if self.failure is not None:
            message = self.failure.message.format(authorization=request.headers.get("authorization", ""))
            body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
            headers = {"x-should-retry": "true", "retry-after-ms": "1"} if self.failure.retry else {"x-should-retry": "false"}
            status = self.failure.status
            if self.failure.times is not None:
                self.failure.times -= 1
                if not self.failure.times:
                    self.failure = None
            await self._send_json(writer, status, body, headers)
            return True
        body = request.body if isinstance(request.body, dict) else {}
        reply = self.replies.popleft() if self.replies else self.reply
        text = reply.text if isinstance(reply, Reply) else reply
        model = body.get("model", "gpt-4o-mini")
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()), "total_tokens": prompt_tokens + len(text.split())}
        if body.get("stream"):
            complete = await self._stream(writer, model, reply, usage if (body.get("stream_options") or {}).get("include_usage") else None)
            if isinstance(reply, Reply) and reply.stall_after is not None:
                await self._release.wait()  # until the client gives up and the server stops
            return complete
        else:
            await self._send_json(writer, 200, {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": MODEL_CREATED,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}],
                "usage": usage,
            })

        return True

    async def _stream(self, writer: asyncio.StreamWriter, model: str, reply: str | Reply, usage: dict | None) -> bool:
        """Stream ``reply``; whether the stream ended as a complete body."""
        script = reply if isinstance(reply, Reply) else Reply(text=reply)
        if self.keep_alive:
            framing = b"Transfer-Encoding: chunked\r\n"
        else:  # a dropped stream ends before the length it announced: the client sees a broken body
            framing = b"Connection: close\r\n" + (b"Content-Length: 1000000\r\n" if script.drop_after is not None else b"")
        if self.set_cookie:
            framing += b"Set-Cookie: " + self.set_cookie.encode() + b"\r\n"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" + framing + b"\r\n")

        def send(data: bytes) -> None:
            writer.write(b"%x\r\n%s\r\n" % (len(data), data) if self.keep_alive else data)

        def chunk(delta: dict, finish_reason: str | None = None, **extra: Any) -> dict:
            choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
            return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": MODEL_CREATED,
                    "model": model, "system_fingerprint": None, "choices": choices, **extra}

        events: list[dict | str] = [chunk({"role": "assistant", "content": "", **script.delta_extra})]
        events += [chunk({"content": piece, **script.delta_extra}) for piece in re.findall(r"\s*\S+|\s+", script.text)]
        for index, call in enumerate(script.tool_calls):
            start = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            events.append(chunk({"tool_calls": [start]}))
            for piece in re.findall(r".{1,4}", call.arguments, re.S):
                events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        for after, failure in ((script.error_after, "error"), (script.drop_after, "drop"), (script.stall_after, "stall")):
            if after is not None:
                events[after + 1:] = [failure]
        if isinstance(events[-1], dict):
            events.append(chunk({}, script.finish_reason or ("tool_calls" if script.tool_calls else "stop")))
            if usage is not None:
                events.append({**chunk({}), "choices": [], "usage": usage})
        for event in events:
            if event == "error":
                body = {"error": {"message": "The model broke mid-stream.", "type": "server_error", "param": None, "code": None}}
                send(b"data: " + json.dumps(body).encode() + b"\n\n")
                if self.keep_alive:
                    send(b"")  # the last chunk
                await writer.drain()
                return self.keep_alive
            if event in ("drop", "stall"):
                await writer.drain()
                return False
            send(b"data: " + json.dumps(event).encode() + b"\n\n")
            await writer.drain()
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        send(b"data: [DONE]\n\n")
        if self.keep_alive:
            send(b"")  # the last chunk
        await writer.drain()
        return True

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, body: dict, headers: dict | None = None) -> None:
        payload = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Error")
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(payload)}",
                "Connection: keep-alive" if self.keep_alive else "Connection: close", f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()
