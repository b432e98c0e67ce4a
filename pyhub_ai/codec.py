"""The one place that turns LangChain messages into JSON-ready dicts and back.

Stored form (schema version 1) is LangChain's own ``message_to_dict`` shape plus a version::

    {"v": 1, "type": "ai", "data": {"content": "...", "tool_calls": [...], ...}}

``decode`` also reads the rows written by django-pyhub-ai, whose form is
``{"_type": "HumanMessage", "_value": {"content": "...", "type": "human", ...}}``, so an
existing database can be read (and migrated) as it is.

Anything that cannot be read or written raises :class:`CodecError`, and nothing else.
"""
from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict

SCHEMA_VERSION = 1

#: Message types LangChain's ``messages_from_dict`` can rebuild.
KNOWN_TYPES = frozenset(
    {
        "human",
        "ai",
        "system",
        "chat",
        "function",
        "tool",
        "HumanMessageChunk",
        "AIMessageChunk",
        "SystemMessageChunk",
        "ChatMessageChunk",
        "FunctionMessageChunk",
        "ToolMessageChunk",
    }
)

#: django-pyhub-ai stored the class name in ``_type``; these are the message classes among them.
LEGACY_CLASS_NAMES = frozenset(
    {
        "HumanMessage",
        "AIMessage",
        "SystemMessage",
        "ChatMessage",
        "FunctionMessage",
        "ToolMessage",
        "HumanMessageChunk",
        "AIMessageChunk",
        "SystemMessageChunk",
        "ChatMessageChunk",
        "FunctionMessageChunk",
        "ToolMessageChunk",
    }
)


class CodecError(ValueError):
    """A message could not be encoded, or a stored payload could not be decoded.

    Raised for corrupt JSON, unknown message types, unsupported schema versions and values
    that JSON cannot hold (an ``artifact`` that is a DataFrame, say). Callers catch this one
    type; the message says what was wrong, and ``payload`` keeps the offending value.
    """

    def __init__(self, message: str, payload: Any = None) -> None:
        super().__init__(message)
        self.payload = payload


def encode(message: BaseMessage) -> dict[str, Any]:
    """Return the JSON-ready dict stored for ``message`` (schema version 1)."""
    if not isinstance(message, BaseMessage):
        raise CodecError(f"Expected a LangChain message, got {type(message).__name__}.", message)
    stored = message_to_dict(message)
    try:
        json.dumps(stored["data"])
    except (TypeError, ValueError) as exc:
        raise CodecError(
            f"{type(message).__name__} holds a value JSON cannot store ({exc}). Store large or "
            "binary tool results as files and keep a reference in the message.",
            message,
        ) from exc
    return {"v": SCHEMA_VERSION, **stored}


def decode(payload: Any) -> BaseMessage:
    """Rebuild the LangChain message from a stored payload (current or django-pyhub-ai form)."""
    if isinstance(payload, (str, bytes)):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise CodecError(f"Stored message is not valid JSON: {exc}", payload) from exc
    if not isinstance(payload, dict):
        raise CodecError(f"Stored message must be a JSON object, got {type(payload).__name__}.", payload)
    if "_type" in payload:
        return _decode_legacy(payload)
    version = payload.get("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise CodecError(f"Unsupported message schema version {version!r}.", payload)
    return _rebuild(payload.get("type"), payload.get("data"), payload)


def _decode_legacy(payload: dict[str, Any]) -> BaseMessage:
    class_name = payload.get("_type")
    value = payload.get("_value")
    if not isinstance(class_name, str) or class_name not in LEGACY_CLASS_NAMES or not isinstance(value, dict):
        raise CodecError(f"Unknown django-pyhub-ai message type {class_name!r}.", payload)
    message_type = class_name if class_name.endswith("Chunk") else value.get("type")
    # LangChain < 1.0 had an ``example`` flag; current messages have no such field.
    data = {key: item for key, item in value.items() if key != "example"}
    return _rebuild(message_type, data, payload)


def _rebuild(message_type: Any, data: Any, payload: Any) -> BaseMessage:
    if not isinstance(message_type, str) or message_type not in KNOWN_TYPES:
        raise CodecError(f"Unknown message type {message_type!r}.", payload)
    if not isinstance(data, dict):
        raise CodecError("Stored message has no 'data' object.", payload)
    try:
        return messages_from_dict([{"type": message_type, "data": data}])[0]
    except Exception as exc:  # LangChain raises pydantic, value, type, key and attribute errors
        raise CodecError(f"Stored {message_type} message is corrupt: {exc!r:.500}", payload) from exc
