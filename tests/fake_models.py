"""How the fake chat models stream a reply: shared by the tests' ``ToolCallingFakeChatModel``
(tests/conftest.py) and the tool-loop benchmark's ``ScriptedToolModel`` (bench/tool_loop.py).

A plain module (no pytest, no Django), so that a benchmark process can import it.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

#: The usage a reply reports when its ``AIMessage`` has no ``usage_metadata``.
DEFAULT_USAGE = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}


def reply_chunks(answer: AIMessage, usage: dict[str, Any] | None = None) -> Iterator[ChatGenerationChunk]:
    """``answer`` as a provider streams it: a chunk per word of its text, a tool-call chunk per
    tool call, then a last chunk with ``usage`` (by default the answer's ``usage_metadata``, else
    ``DEFAULT_USAGE``)."""
    if answer.content:
        for word in answer.content.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
    for index, call in enumerate(answer.tool_calls):
        chunk = {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": index}
        yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[chunk]))
    usage = usage or answer.usage_metadata or DEFAULT_USAGE
    yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=usage))
