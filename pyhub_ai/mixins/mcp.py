"""MCP tool servers: their tools join the consumer's own tools."""
from __future__ import annotations

import copy
import logging
from typing import Any

from langchain_core.tools import BaseTool

from ..mcp_tools import mcp_sessions

logger = logging.getLogger("pyhub_ai.mcp")


class MCPMixin:
    """Adds the tools of the MCP servers in ``mcp_servers`` to the turn's tools.

    ``aget_tools()`` (called by ``AgentMixin.produce_reply`` once per turn) adds, for each server
    of ``get_mcp_servers()``, the tools of its session (``pyhub_ai.mcp_tools``: opened once per
    process and connection, reused by later turns), connected with
    ``get_mcp_server_credentials(name)`` merged in. A server that is down never fails the turn:
    its tools answer with an error the model can read.

    ``mcp_servers`` maps a server's name to a langchain-mcp-adapters connection::

        mcp_servers = {
            "files": {"transport": "stdio", "command": "python", "args": ["files_server.py"]},
            "crm": {"transport": "streamable_http", "url": "http://127.0.0.1:9000/mcp"},
        }
    """

    mcp_servers: dict[str, dict[str, Any]] | None = None

    def get_mcp_servers(self) -> dict[str, dict[str, Any]]:
        """The MCP servers whose tools the model may call (a copy of ``mcp_servers``)."""
        return copy.deepcopy(self.mcp_servers or {})

    def get_mcp_server_credentials(self, name: str) -> dict[str, dict[str, str]]:
        """Per-user credentials for server ``name``: ``{"headers": {...}}`` (HTTP) or
        ``{"env": {...}}`` (stdio), merged into its connection. Default: none.

        Called once per turn for each server; each distinct set of credentials gets a session
        of its own, so one user's token never serves another user's calls.
        """
        return {}

    async def aget_tools(self) -> list[BaseTool]:
        tools = await super().aget_tools()
        for name, connection in self.get_mcp_servers().items():
            for field, values in self.get_mcp_server_credentials(name).items():
                connection[field] = {**(connection.get(field) or {}), **values}
            tools += await mcp_sessions().tools(name, connection)
        return tools
