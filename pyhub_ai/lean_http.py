"""A lean HTTP/1.1 transport for the model's own openai client, used by the fast streaming path.

``openai_stream.openai_reply_stream()`` sends each request through ``lean_client_for(client)``:
a copy of the model's ``AsyncOpenAI`` client whose ``httpx2.AsyncClient`` has a
``LeanTransport``. The SDK still builds the request, authenticates, retries, maps status codes
to its exceptions and applies its timeouts; httpx2 still builds the ``Request`` and decodes the
body. Only the bytes on the wire are read here, with asyncio's streams.

Why (measured 2026-11-30 on 2 cores, a local OpenAI-compatible server, client CPU per streamed
200-event reply): httpx2's default transport (httpcore2 + h11, anyio cancel scopes per read)
12.6 ms; a minimal asyncio client 4–7 ms. Reading the body is most of the model client's cost
per token, and that reading is what this module does.

The copy is made only when the model's client is the default one langchain-openai builds: an
``httpx2.AsyncHTTPTransport`` without proxy (no ``openai_proxy``, no proxy in the environment:
httpx2 mounts one then), HTTP/2, UNIX socket or local address, and no event hooks or auth on the
client. Any other client (``http_async_client=...``) is used as it is. What the default
transport does that is kept: its SSL context (``verify``, ``cert``), its socket options
(langchain-openai's TCP keepalive), keep-alive connections (at most ``max_keepalive`` idle per
host, closed after ``keepalive_expiry`` seconds), and the timeouts the SDK puts on each request
(connect, write, and read: the longest wait for any bytes). Errors are httpx2's
(``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``RemoteProtocolError``, ...), which the SDK
maps to ``APIConnectionError`` / ``APITimeoutError`` and retries as before.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx2

from .loop_clock import loop_clock

logger = logging.getLogger(__name__)

#: Longest status line or header line read from a server.
MAX_LINE = 65536
#: The most header lines a response may have.
MAX_HEADERS = 200


def lean_client_for(client: Any) -> Any:
    """``client`` (an ``openai.AsyncOpenAI``) with its HTTP client replaced by one on a
    ``LeanTransport``, made once per client; ``client`` itself when its HTTP client is not the
    default one (see the module docstring)."""
    try:
        return _lean_clients[client]
    except KeyError:
        pass
    try:
        transport = _lean_transport_like(client._client)
    except AttributeError as exc:  # httpx2's or the SDK's internals moved: their own client then
        logger.warning("The lean HTTP transport is off (%r); the model's own HTTP client reads its replies.", exc)
        transport = None
    lean = client if transport is None else client.with_options(
        http_client=httpx2.AsyncClient(transport=transport, timeout=client._client.timeout, trust_env=False)
    )  # fmt: skip
    _lean_clients[client] = lean
    return lean


_lean_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def body_chunks(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The bytes of ``response``'s body as they arrive: what ``response.aiter_bytes()`` yields.

    Called by ``openai_stream.OpenAIReplyStream.texts`` for every streamed reply. A body that
    ``LeanTransport`` reads (as the response's stream when ``openai_direct`` sent the request,
    else inside httpx2's) and that is not compressed is iterated as it is: httpx2's
    ``aiter_bytes`` puts three more async generators (``aiter_raw``, ``BoundAsyncStream``, a
    decoder and a chunker that pass the bytes through) around every read, about 0.1 ms of the
    event loop per 10-event reply (bench micro-measurement, 2026-11-30). The response is marked
    consumed, as ``aiter_raw`` marks it; closing it (the SDK's stream does) releases the
    connection as before. Any other body goes through ``aiter_bytes``."""
    body = response.stream  # the transport's (openai_direct), or httpx2's BoundAsyncStream around it
    if type(body) is not _Body:
        body = getattr(body, "_stream", None)
    if type(body) is not _Body or response.is_stream_consumed or response.is_closed or "content-encoding" in response.headers:
        return response.aiter_bytes()
    response.is_stream_consumed = True
    return body.__aiter__()
#: Methods of ``httpx2.AsyncClient`` that a subclass must not override for its copy to send alike.
_SENDING = ("send", "_send_handling_auth", "_send_handling_redirects", "_send_single_request")


def _lean_transport_like(http_client: Any) -> LeanTransport | None:
    """A ``LeanTransport`` with the SSL context, socket options and keep-alive limits of
    ``http_client``'s default transport, or ``None`` when ``http_client`` is anything else."""
    transport = getattr(http_client, "_transport", None)
    pool = getattr(transport, "_pool", None)
    if (
        not isinstance(http_client, httpx2.AsyncClient)
        or any(getattr(type(http_client), name) is not getattr(httpx2.AsyncClient, name) for name in _SENDING)
        or type(transport) is not httpx2.AsyncHTTPTransport
        or http_client._mounts
        or any(http_client.event_hooks.values())
        or http_client.auth is not None
        or type(pool).__name__ != "AsyncConnectionPool"
        or getattr(pool, "_http2", False)
        or not getattr(pool, "_http1", True)
        or getattr(pool, "_uds", None)
        or getattr(pool, "_local_address", None)
    ):
        return None
    return LeanTransport(
        ssl_context=pool._ssl_context,
        socket_options=tuple(pool._socket_options or ()),
        max_keepalive=pool._max_keepalive_connections,
        keepalive_expiry=pool._keepalive_expiry,
    )


class LeanTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 over ``asyncio.open_connection``, with a pool of idle keep-alive connections."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        socket_options: tuple[tuple[int, int, int], ...] = (),
        max_keepalive: int | None = 20,
        keepalive_expiry: float | None = 5.0,
    ) -> None:
        self.ssl_context = ssl_context
        self.socket_options = socket_options
        self.max_keepalive = 20 if max_keepalive is None else max_keepalive
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[tuple[bytes, bytes, int], list[_Connection]] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` on an idle connection to its origin (a new one when there is none,
        or when the idle one turns out to be closed by the server) and return the response
        as soon as its headers are read; the body streams as it is iterated."""
        timeouts = request.extensions.get("timeout") or {}
        body = await request.aread()
        head = _request_head(request, body)
        connection = self._take_idle(request)
        if connection is not None:
            try:
                return await connection.exchange(request, head, body, timeouts)
            except _StaleConnection:
                pass  # the server closed it while idle: nothing was answered, send it again
        connection = await _Connection.open(request, self, timeouts.get("connect"))
        try:
            return await connection.exchange(request, head, body, timeouts)
        except _StaleConnection:
            raise httpx2.RemoteProtocolError("Server disconnected without sending a response.", request=request) from None

    def _take_idle(self, request: httpx2.Request) -> _Connection | None:
        idle = self._idle.get(_origin(request.url))
        loop = asyncio.get_running_loop()
        while idle:
            connection = idle.pop()
            if connection.reader._loop is not loop:
                continue  # opened by another event loop (which may be closed): dropped unused
            if connection.reusable(loop.time()):
                return connection
            connection.close()
        return None

    def release(self, connection: _Connection) -> None:
        """Keep ``connection`` for the next request to its origin (``_Body`` calls this when a
        response body has been read to its end)."""
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) >= self.max_keepalive:
            connection.close()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        idle.append(connection)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class _StaleConnection(Exception):
    """A reused connection was closed before any byte of the response arrived."""


class _Connection:
    """One HTTP/1.1 connection: requests are sent one after another, never pipelined."""

    def __init__(self, transport: LeanTransport, origin: tuple[bytes, bytes, int], reader, writer) -> None:
        self.transport = transport
        self.origin = origin
        self.reader: asyncio.StreamReader = reader
        self.writer: asyncio.StreamWriter = writer
        self.idle_since: float | None = None
        #: Whether the reading in progress was ended by its read timeout (``_Watchdog``).
        self.timed_out = False

    @classmethod
    async def open(cls, request: httpx2.Request, transport: LeanTransport, timeout: float | None) -> _Connection:
        """Connect to ``request``'s origin (TLS for https, with the transport's context)."""
        scheme, host, port = origin = _origin(request.url)
        tls = scheme == b"https"
        if tls and transport.ssl_context is None:
            transport.ssl_context = httpx2.create_ssl_context()
        try:
            async with asyncio.timeout(timeout):  # a timer, not a task as wait_for() makes
                reader, writer = await asyncio.open_connection(
                    host.decode("ascii"), port, limit=MAX_LINE,
                    ssl=transport.ssl_context if tls else None,
                    server_hostname=host.decode("ascii") if tls else None,
                )  # fmt: skip
        except TimeoutError:
            raise httpx2.ConnectTimeout("Timed out while connecting.", request=request) from None
        except OSError as exc:
            raise httpx2.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        sock = writer.get_extra_info("socket")
        try:
            for option in transport.socket_options:
                sock.setsockopt(*option)
        except OSError as exc:
            writer.transport.abort()
            raise httpx2.ConnectError(str(exc), request=request) from exc
        return cls(transport, origin, reader, writer)

    def reusable(self, loop_time: float) -> bool:
        """Whether this idle connection may carry another request."""
        expiry = self.transport.keepalive_expiry
        if expiry is not None and self.idle_since is not None and loop_time - self.idle_since > expiry:
            return False
        return not (self.writer.transport.is_closing() or self.reader.at_eof() or self.reader._buffer)

    async def exchange(self, request: httpx2.Request, head: bytes, body: bytes, timeouts: dict) -> httpx2.Response:
        """Write the request, read the response's head; raise ``_StaleConnection`` when a
        reused connection ends before the first byte of the answer."""
        reused = self.idle_since is not None
        self.idle_since = None
        try:
            self.writer.write(head + body)
            if self.writer.transport.get_write_buffer_size():  # the socket did not take it all at once
                async with asyncio.timeout(timeouts.get("write")):
                    await self.writer.drain()
        except TimeoutError:
            self.close()
            raise httpx2.WriteTimeout("Timed out while sending the request.", request=request) from None
        except OSError as exc:
            self.close()
            if reused:
                raise _StaleConnection from exc
            raise httpx2.WriteError(str(exc) or type(exc).__name__, request=request) from exc
        read_timeout = timeouts.get("read")
        with _Watchdog(self, read_timeout):
            try:
                version, status, reason, headers = await self._read_head(request, reused)
            except httpx2.ReadError as exc:
                self.close()
                if reused:  # reset by the server before it answered
                    raise _StaleConnection from exc
                raise
            except BaseException:
                self.close()
                raise
        connection_header = b",".join(value.lower() for name, value in headers if name.lower() == b"connection")
        keep_alive = b"keep-alive" in connection_header if version == b"HTTP/1.0" else b"close" not in connection_header
        framing = _framing(request, status, headers)
        return httpx2.Response(
            status,
            headers=headers,
            stream=_Body(self, request, framing, keep_alive, read_timeout),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def _read_head(self, request: httpx2.Request, reused: bool) -> tuple[bytes, int, bytes, list]:
        """The HTTP version, status, reason and header lines of the response (interim 1xx
        answers skipped)."""
        while True:
            line = await self.read_line(request)
            if not line:
                if reused:
                    raise _StaleConnection
                raise httpx2.RemoteProtocolError("Server disconnected without sending a response.", request=request)
            parts = line.rstrip(b"\r\n").split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise httpx2.RemoteProtocolError(f"Malformed status line {line[:100]!r}.", request=request)
            headers = []
            while (line := await self.read_line(request)) not in (b"\r\n", b"\n"):
                if not line or len(headers) >= MAX_HEADERS or b":" not in line:
                    raise httpx2.RemoteProtocolError("Malformed or incomplete response headers.", request=request)
                name, _, value = line.partition(b":")
                headers.append((name.strip(), value.strip()))
            status = int(parts[1])
            if status >= 200 or status == 101:
                return parts[0], status, parts[2] if len(parts) > 2 else b"", headers

    async def read_line(self, request: httpx2.Request) -> bytes:
        """One line (with its ending; ``b""`` at the end of the stream), errors as httpx2's."""
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            self.raise_if_timed_out(request)
            return exc.partial
        except asyncio.LimitOverrunError:
            raise httpx2.RemoteProtocolError("A line of the response is too long.", request=request) from None
        except OSError as exc:
            raise self.read_error(request, exc) from exc

    def read_error(self, request: httpx2.Request, exc: OSError) -> httpx2.TransportError:
        """The httpx2 error for a read of the body that failed with ``exc``: ``ReadTimeout``
        when the read timeout (``_Watchdog``) ended it."""
        if self.timed_out:
            return httpx2.ReadTimeout("Timed out while reading the response.", request=request)
        return httpx2.ReadError(str(exc) or type(exc).__name__, request=request)

    def raise_if_timed_out(self, request: httpx2.Request) -> None:
        if self.timed_out:
            raise httpx2.ReadTimeout("Timed out while reading the response.", request=request)

    def close(self) -> None:
        self.writer.transport.abort()


class _Watchdog:
    """The read timeout of a connection: one timer for a whole response, not one per read.

    The reader sets ``last`` to ``clock()`` when bytes arrive (an attribute, not a method: it
    runs for every event of a stream); when the timer fires and no bytes arrived for
    ``timeout`` seconds, the connection is aborted, which ends the read in progress, and its
    ``timed_out`` flag turns that end into ``httpx2.ReadTimeout``."""

    def __init__(self, connection: _Connection, timeout: float | None) -> None:
        self.connection = connection
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.clock = loop_clock(self.loop)
        self.last = 0.0
        self.handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> _Watchdog:
        if self.timeout is not None:
            self.last = self.clock()
            self.handle = self.loop.call_at(self.last + self.timeout, self._check)
        return self

    def _check(self) -> None:
        due = self.last + self.timeout
        if self.clock() >= due:
            self.handle = None
            self.connection.timed_out = True
            self.connection.close()
        else:
            self.handle = self.loop.call_at(due, self._check)

    def __exit__(self, *exc_info: Any) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class _Body(httpx2.AsyncByteStream):
    """A response body as it arrives: by ``Content-Length``, chunked, or to the end of the
    stream. The connection goes back to the transport's pool when the body has been read to
    its end and both sides keep it alive; otherwise it is closed."""

    def __init__(self, connection: _Connection, request: httpx2.Request, framing: int | str, keep_alive: bool, timeout: float | None) -> None:
        self.connection = connection
        self.request = request
        self.framing = framing
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.done = False
        #: Chunked bodies: bytes read and not yet parsed, and whether the last chunk was read. They
        #: belong to the body, not to one iteration: the SDK iterates a body again to drain it.
        self.unread = bytearray()
        self.in_trailers = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunked() if self.framing == "chunked" else self._plain()

    async def _chunked(self) -> AsyncIterator[bytes]:
        """The data of each chunk of a ``Transfer-Encoding: chunked`` body (how api.openai.com
        streams, on kept-alive connections), parsed from what each read brings: one read per
        arrival, where reading the size line and then the data and its CRLF with the reader's
        ``readuntil``/``readexactly`` took two reads per event, and 4 Python calls more per
        event (63.4 against 59.4 per token of a 200-token turn, ``bench.turn_calls``,
        2026-11-30). Chunk extensions are ignored and the trailer section is read to its end;
        bytes that follow the body (a server that answers before it is asked) make the
        connection unusable. Iterating the body again (the SDK drains it after ``[DONE]``) goes
        on where the last iteration stopped.

        Like ``_plain``, it reads the connection's ``StreamReader`` itself: every coroutine
        between the reader and the reply's loop costs two Python calls per event (resumed when
        the bytes arrive, called again for the next)."""
        connection, request, buffer = self.connection, self.request, self.unread
        if self.done or connection is None:
            return
        reader = connection.reader
        with _Watchdog(connection, self.timeout) as watchdog:
            clock = watchdog.clock
            while True:
                end = buffer.find(b"\n")
                if end >= 0 and self.in_trailers:  # the trailer section, up to its empty line
                    line = bytes(buffer[: end + 1])
                    del buffer[: end + 1]
                    if line in (b"\r\n", b"\n"):
                        break
                    continue
                if end >= 0:  # a chunk: its size line, its data, CRLF
                    size = _chunk_size(buffer[:end], request)
                    if size == 0:
                        del buffer[: end + 1]
                        self.in_trailers = True
                        continue
                    stop = end + 1 + size
                    if len(buffer) >= stop + 2:
                        data = bytes(buffer[end + 1 : stop])
                        del buffer[: stop + 2]
                        yield data
                        continue
                elif len(buffer) >= MAX_LINE:
                    raise httpx2.RemoteProtocolError("A line of the response is too long.", request=request)
                try:
                    data = await reader.read(65536)  # more of the line or the chunk
                except OSError as exc:
                    raise connection.read_error(request, exc) from exc
                if not data:
                    connection.raise_if_timed_out(request)
                    raise httpx2.RemoteProtocolError("peer closed connection without sending complete message body", request=request)
                watchdog.last = clock()
                buffer += data
        if buffer:
            self.keep_alive = False
        self.done = True

    async def _plain(self) -> AsyncIterator[bytes]:
        """The body as it arrives: to the end of the stream, or to its ``Content-Length`` (never
        read past it)."""
        connection, request = self.connection, self.request
        if self.done or connection is None:
            return
        reader = connection.reader
        remaining = self.framing  # a byte count, or "eof"
        if remaining == "eof":
            self.keep_alive = False
        with _Watchdog(connection, self.timeout) as watchdog:
            clock = watchdog.clock
            while remaining:
                try:
                    data = await reader.read(65536 if remaining == "eof" else min(remaining, 65536))
                except OSError as exc:
                    raise connection.read_error(request, exc) from exc
                if not data:
                    connection.raise_if_timed_out(request)
                    if remaining == "eof":
                        break
                    raise httpx2.RemoteProtocolError("peer closed connection without sending complete message body", request=request)
                watchdog.last = clock()
                if remaining != "eof":
                    remaining -= len(data)
                yield data
        self.done = True

    async def aclose(self) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        if self.done and self.keep_alive:
            connection.transport.release(connection)
        else:
            connection.close()


def _origin(url: httpx2.URL) -> tuple[bytes, bytes, int]:
    scheme = url.raw_scheme
    return scheme, url.raw_host, url.port or (443 if scheme == b"https" else 80)


def _request_head(request: httpx2.Request, body: bytes) -> bytes:
    """The request line and headers (httpx2 has set Host); a body that httpx2 would send
    chunked is sent whole, with its length."""
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    headers = request.headers.raw
    if "transfer-encoding" in request.headers:
        headers = [(name, value) for name, value in headers if name.lower() != b"transfer-encoding"]
        headers.append((b"Content-Length", str(len(body)).encode("ascii")))
    lines += [b"%s: %s" % (name, value) for name, value in headers]  # not a generator: a call per line
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _chunk_size(line: bytearray, request: httpx2.Request) -> int:
    """The size in a chunk's size line (its extensions after ``;`` ignored)."""
    try:
        size = int(line.split(b";", 1)[0], 16)
    except ValueError:
        size = -1
    if size < 0:
        raise httpx2.RemoteProtocolError(f"Malformed chunk size line {bytes(line[:100])!r}.", request=request)
    return size


def _framing(request: httpx2.Request, status: int, headers: list[tuple[bytes, bytes]]) -> int | str:
    """How the body ends: a byte count, ``"chunked"``, or ``"eof"`` (the connection closes)."""
    if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return 0
    length = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding" and value.lower().endswith(b"chunked"):
            return "chunked"
        if lowered == b"content-length" and value.isdigit():
            length = int(value)
    return "eof" if length is None else length
