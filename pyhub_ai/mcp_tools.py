"""MCP tool servers as LangChain tools, with their sessions kept open across turns.

``MCPMixin.aget_tools()`` asks ``mcp_tools(name, connection)`` for each server a consumer lists
(``mcp_servers``). The connection is a dict as langchain-mcp-adapters takes it (``{"transport":
"stdio", "command": ..., "args": [...], "env": {...}}`` or ``{"transport": "streamable_http",
"url": ..., "headers": {...}}``). Sessions live in a per-event-loop ``MCPSessions``:

- one session per (server, connection) — a user's own credentials make their own connection —
  opened on first use and reused by every later turn of the process; a stdio server is one
  child process, not one per call;
- a session whose server failed (a transport error in a call, or the connection ended) is
  closed, and the next turn reconnects; a server that cannot be reached is tried again at most
  every ``RECONNECT_INTERVAL`` seconds, and meanwhile its tools (as last listed) answer with an
  error the model can read: the turn goes on;
- at most ``MAX_SESSIONS`` are open (the least recently used is closed), and ``aclose()``
  closes them all; a stdio server also exits when the process does (its stdin closes).

Needs ``pip install "pyhub_ai[mcp]"`` (langchain-mcp-adapters).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from langchain_core.tools import BaseTool

from .conf import conf

logger = logging.getLogger("pyhub_ai.mcp")

#: Seconds between two attempts to reach a server that could not be reached.
RECONNECT_INTERVAL = 10.0
#: Open sessions per process (per event loop); the least recently used one is closed beyond it.
MAX_SESSIONS = 64


class MCPServerUnavailable(RuntimeError):
    """The tool's MCP server cannot be reached right now (the model reads this as a tool error)."""


def _adapters() -> Any:
    try:
        from langchain_mcp_adapters import sessions, tools
    except ImportError as exc:
        raise ImproperlyConfigured(
            'mcp_servers needs langchain-mcp-adapters: pip install "pyhub_ai[mcp]"'
        ) from exc
    return sessions, tools


class _Session:
    """One open MCP session, held by a task of its own (the transport's context must be entered
    and left by the same task), and the server's tools bound to it."""

    def __init__(self, name: str, connection: dict[str, Any]) -> None:
        self.name = name
        self.connection = connection
        self.tools: list[BaseTool] = []
        self.alive = False
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._error: BaseException | None = None
        self._task = asyncio.create_task(self._hold(), name=f"pyhub_ai MCP session {name}")

    async def _hold(self) -> None:
        sessions, tools = _adapters()
        try:
            async with sessions.create_session(self.connection) as session:
                await session.initialize()
                self.tools = await tools.load_mcp_tools(
                    session, server_name=self.name, tool_interceptors=[self._watch_transport]
                )
                self.alive = True
                self._ready.set()
                await self._closing.wait()
        except Exception as exc:  # noqa: BLE001  (a server that fails is reported, not raised)
            self._error = exc
        finally:
            self.alive = False
            self._ready.set()

    async def _watch_transport(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        """A tool-call interceptor: a call that fails below the tool (the transport, the
        session) or is cut off (``PYHUB_AI_TOOL_TIMEOUT``: a server that went away leaves the
        call waiting) ends this session, so the next turn connects again."""
        try:
            return await handler(request)
        except BaseException:
            logger.warning("A call to MCP server %r failed or was cut off; it is reconnected on the next turn.", self.name)
            self.close()
            raise

    async def opened(self, timeout: float) -> None:
        """Wait until the session is open; raise ``MCPServerUnavailable`` if it could not open."""
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            self.close()
            raise MCPServerUnavailable(f"the MCP server {self.name!r} did not answer within {timeout} s") from None
        if not self.alive:
            raise MCPServerUnavailable(f"the MCP server {self.name!r} cannot be reached: {self._error!r}")

    def close(self) -> None:
        self.alive = False
        self._closing.set()

    async def aclose(self) -> None:
        self.close()
        await asyncio.wait([self._task], timeout=5)


def _unavailable(tool: BaseTool, reason: str) -> BaseTool:
    """``tool`` (as last listed by its server) answering with ``reason`` as a tool error."""

    async def unavailable(**kwargs: Any) -> Any:
        raise MCPServerUnavailable(reason)

    return tool.model_copy(update={"coroutine": unavailable, "func": None})


class MCPSessions:
    """The open MCP sessions of one event loop (see the module's docstring)."""

    def __init__(self) -> None:
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        # Both keyed like the sessions, and kept to MAX_SESSIONS entries: one per set of
        # per-user credentials would otherwise grow for as long as the process lives.
        self._last_tools: OrderedDict[str, list[BaseTool]] = OrderedDict()
        self._retry_after: OrderedDict[str, float] = OrderedDict()

    async def tools(self, name: str, connection: dict[str, Any]) -> list[BaseTool]:
        """The tools of server ``name``; never raises for a server that is down."""
        key = json.dumps([name, connection], sort_keys=True, default=str)
        session = self._sessions.get(key)
        if session is not None and session.alive:
            self._sessions.move_to_end(key)
            return session.tools
        if session is not None:
            del self._sessions[key]
        if time.monotonic() < self._retry_after.get(key, 0.0):
            return self._stand_ins(key, name, "it could not be reached a moment ago")
        session = _Session(name, connection)
        try:
            await session.opened(timeout=conf.TOOL_TIMEOUT)
        except MCPServerUnavailable as exc:
            logger.warning("%s; its tools answer with an error until it is back.", exc)
            _put_bounded(self._retry_after, key, time.monotonic() + RECONNECT_INTERVAL)
            return self._stand_ins(key, name, str(exc))
        self._retry_after.pop(key, None)
        self._sessions[key] = session
        _put_bounded(self._last_tools, key, session.tools)
        while len(self._sessions) > MAX_SESSIONS:
            _, oldest = self._sessions.popitem(last=False)
            oldest.close()
        return session.tools

    def _stand_ins(self, key: str, name: str, reason: str) -> list[BaseTool]:
        message = f"The tool server {name!r} is unavailable ({reason}). Try again later or answer without it."
        return [_unavailable(tool, message) for tool in self._last_tools.get(key, ())]

    async def aclose(self) -> None:
        """Close every session (a stdio server's process exits)."""
        sessions, self._sessions = list(self._sessions.values()), OrderedDict()
        await asyncio.gather(*(session.aclose() for session in sessions))


def _put_bounded(mapping: OrderedDict[str, Any], key: str, value: Any) -> None:
    """Set ``mapping[key]`` as its newest entry, dropping the oldest beyond ``MAX_SESSIONS``."""
    mapping[key] = value
    mapping.move_to_end(key)
    while len(mapping) > MAX_SESSIONS:
        mapping.popitem(last=False)


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MCPSessions] = weakref.WeakKeyDictionary()


def mcp_sessions() -> MCPSessions:
    """The ``MCPSessions`` of the running event loop (one per daphne process)."""
    loop = asyncio.get_running_loop()
    if loop not in _per_loop:
        _per_loop[loop] = MCPSessions()
    return _per_loop[loop]
