"""A real MCP tool server for the tests, built with the official ``mcp`` SDK.

``python -m tests.mcp_server stdio`` serves it over stdio; ``python -m tests.mcp_server http
PORT`` over streamable HTTP on 127.0.0.1 (at ``/mcp``). Tools:

- ``add(a, b)``: the sum of two integers;
- ``whoami()``: the caller's credential: the ``X-User-Token`` header over HTTP, the
  ``MCP_USER_TOKEN`` environment variable over stdio ("anonymous" without one);
- ``process_id()``: the server's pid (a reused connection keeps answering with the same one);
- ``fail()``: an MCP tool error.
"""
from __future__ import annotations

import os
import sys

from mcp.server.fastmcp import Context, FastMCP

server = FastMCP("pyhub-ai-test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def whoami(ctx: Context) -> str:
    """Who the server thinks is calling."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    if headers is not None:
        return headers.get("x-user-token", "anonymous")
    return os.environ.get("MCP_USER_TOKEN", "anonymous")


@server.tool()
def process_id() -> int:
    """The pid of this server process."""
    return os.getpid()


@server.tool()
def fail() -> str:
    """Always fails."""
    raise ValueError("this tool always fails")


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.settings.host, server.settings.port = "127.0.0.1", int(sys.argv[2])
        server.run("streamable-http")
