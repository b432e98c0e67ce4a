"""MCP tool servers (``mcp_servers``) through the real websocket, against a real MCP server
process built with the official ``mcp`` SDK (tests/mcp_server.py), over stdio and over HTTP."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from pyhub_ai.consumers import AgentChatConsumer
from pyhub_ai.mcp_tools import mcp_sessions
from pyhub_ai.models import Conversation, ConversationMessage

from .conftest import tool_calls_then
from .live_server import _accepts_connections, _stop, free_port

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
STDIO = {"transport": "stdio", "command": sys.executable, "args": ["-m", "tests.mcp_server", "stdio"], "cwd": str(ROOT)}


def start_http_server() -> tuple[str, subprocess.Popen]:
    """The test MCP server over streamable HTTP on a free port of 127.0.0.1: ``(url, process)``."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.mcp_server", "http", str(port)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if _accepts_connections("127.0.0.1", port):
            break
        subprocess.run(["sleep", "0.1"])
    return f"http://127.0.0.1:{port}/mcp", process


@pytest.fixture(scope="module")
def http_server():
    url, process = start_http_server()
    yield url, process
    _stop(process)


@pytest.fixture(autouse=True)
async def _close_mcp_sessions():
    """Each test has its own event loop: close the sessions it opened (their processes exit)."""
    yield
    await mcp_sessions().aclose()


class MCPConsumer(AgentChatConsumer):
    llm_model = "openai:gpt-4o-mini"
    servers: dict = {}

    def get_mcp_servers(self):
        return {name: dict(connection) for name, connection in MCPConsumer.servers.items()}

    def get_mcp_server_credentials(self, name):
        token = f"token-of-{self.get_user().get_username()}"
        return {"headers": {"X-User-Token": token}} if name == "remote" else {"env": {"MCP_USER_TOKEN": token}}


application = URLRouter([path("ws/mcp/<int:conversation_pk>/", MCPConsumer.as_asgi())])


async def turn(user, conversation=None, text="use the tools"):
    """One turn through the websocket; returns (frames, the conversation)."""
    conversation = conversation or await Conversation.objects.acreate(user=user)
    communicator = WebsocketCommunicator(application, f"/ws/mcp/{conversation.pk}/")
    communicator.scope["user"] = user
    await communicator.connect()
    while (await communicator.receive_json_from(timeout=10))["type"] != "history":
        pass
    await communicator.send_json_to({"type": "user_message", "text": text})
    frames = []
    while not frames or frames[-1]["type"] not in ("stream_end", "error"):
        frames.append(await communicator.receive_json_from(timeout=40))
    await communicator.disconnect()
    return frames, conversation


def results(frames):
    return [(f["message"]["name"], f["message"]["text"], f["message"]["tool_status"]) for f in frames if f["type"] == "tool_result"]


async def test_a_stdio_servers_tools_are_called_streamed_and_stored(user_a, use_model):
    MCPConsumer.servers = {"local": STDIO}
    model = use_model(tool_calls_then([("add", {"a": 2, "b": 3})], "2 + 3 = 5."))

    frames, conversation = await turn(user_a)

    assert set(model.bound_tools) >= {"add", "whoami", "process_id", "fail"}
    assert results(frames) == [("add", "5", "success")]
    assert frames[-1]["type"] == "stream_end"
    rows = [row async for row in ConversationMessage.objects.filter(conversation=conversation).order_by("pk")]
    assert [row.role for row in rows] == ["human", "ai", "tool", "ai"]
    assert rows[2].message.name == "add" and "5" in rows[2].message.text


async def test_one_server_process_serves_every_turn_of_the_process(user_a, use_model):
    MCPConsumer.servers = {"local": STDIO}
    use_model(tool_calls_then([("process_id", {})], "first", [("process_id", {})], "second"))

    first, conversation = await turn(user_a)
    second, _ = await turn(user_a, conversation)

    assert results(first)[0][1] == results(second)[0][1]  # the same server process answered both turns
    assert int(results(first)[0][1]) != os.getpid()


async def test_each_user_calls_with_their_own_credentials_over_http(user_a, user_b, use_model, http_server):
    url, _ = http_server
    MCPConsumer.servers = {"remote": {"transport": "streamable_http", "url": url}}
    use_model(tool_calls_then([("whoami", {})], "a", [("whoami", {})], "b"))

    as_alice, _ = await turn(user_a)
    as_bob, _ = await turn(user_b)

    assert results(as_alice) == [("whoami", "token-of-alice", "success")]
    assert results(as_bob) == [("whoami", "token-of-bob", "success")]


async def test_stdio_credentials_go_into_the_servers_environment(user_b, use_model):
    MCPConsumer.servers = {"local": STDIO}
    use_model(tool_calls_then([("whoami", {})], "done"))

    frames, _ = await turn(user_b)

    assert results(frames) == [("whoami", "token-of-bob", "success")]


async def test_a_tool_error_reaches_the_model_and_the_turn_completes(user_a, use_model):
    MCPConsumer.servers = {"local": STDIO}
    model = use_model(tool_calls_then([("fail", {})], "It failed, sorry."))

    frames, _ = await turn(user_a)

    [(name, text, status)] = results(frames)
    assert (name, status) == ("fail", "error") and "always fails" in text
    assert frames[-1]["type"] == "stream_end"
    assert model.calls[1][-1].type == "tool"  # the model read the error


async def test_a_server_that_goes_down_fails_its_tools_never_the_turn(user_a, use_model, settings):
    settings.PYHUB_AI_TOOL_TIMEOUT = 2  # a call to a server that went away waits until it
    url, process = start_http_server()
    MCPConsumer.servers = {"remote": {"transport": "streamable_http", "url": url}}
    use_model(tool_calls_then(
        [("whoami", {})], "up",
        [("whoami", {})], "went down",
        [("whoami", {})], "still down",
    ))

    up, conversation = await turn(user_a)
    _stop(process)
    went_down, _ = await turn(user_a, conversation)
    still_down, _ = await turn(user_a, conversation)

    assert results(up) == [("whoami", "token-of-alice", "success")]
    for frames in (went_down, still_down):
        [(name, text, status)] = results(frames)
        assert (name, status) == ("whoami", "error"), text
        assert frames[-1]["type"] == "stream_end"
    assert "unavailable" in results(still_down)[0][1]


async def test_a_server_that_never_answers_leaves_the_turn_working(user_a, use_model):
    MCPConsumer.servers = {"missing": {"transport": "stdio", "command": sys.executable, "args": ["-c", "raise SystemExit(3)"]}}
    use_model(tool_calls_then("No tools today."))

    frames, _ = await turn(user_a)

    assert frames[-1]["type"] == "stream_end"
    assert frames[-1]["message"]["text"].strip() == "No tools today."


async def test_closing_the_sessions_ends_the_stdio_server_process(user_a, use_model):
    MCPConsumer.servers = {"local": STDIO}
    use_model(tool_calls_then([("process_id", {})], "done"))
    frames, _ = await turn(user_a)
    pid = int(results(frames)[0][1])

    await mcp_sessions().aclose()

    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        subprocess.run(["sleep", "0.1"])
    else:
        raise AssertionError(f"the MCP server process {pid} is still running")
