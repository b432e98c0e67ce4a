"""How stored messages are shown: plain text for people, message objects for the page.

Used by the consumers (``history``/``message``/``stream_end`` frames, see docs/protocol.md)
and by the admin. Nothing here renders HTML: the page and the admin escape what they show.
"""
from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from . import codec
from .attachments import message_attachments
from .models import ConversationMessage


def message_text(message: BaseMessage) -> str:
    """The readable text of a message; non-text content blocks become placeholders like [image]."""
    if isinstance(message.content, str):
        return message.content
    parts = []
    for block in message.content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, dict):
            parts.append(f"[{block.get('type', 'content')}]")
    return "\n".join(parts)


def message_object(row: ConversationMessage, versions: list[int] | None = None, *, message: BaseMessage | None = None) -> dict[str, Any]:
    """The protocol's message object for a stored row (an unreadable row shows as a notice);
    ``versions``: the ids of the row's versions (``DjangoChatMessageHistory.get_versions``);
    ``message``: the row's message when the caller holds it already (what the row stores), so
    it is not decoded again (the chat consumer's frames of a turn)."""
    data: dict[str, Any] = {
        "id": row.pk,
        "role": row.role,
        "status": row.status,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "turn_id": str(row.turn_id) if row.turn_id else None,
    }
    if versions and len(versions) > 1:
        data["versions"] = versions
    if message is None:
        try:
            message = row.message
        except codec.CodecError:
            data["text"] = "[unreadable message]"
            return data
    data["text"] = message_text(message)
    files = message_attachments(message)
    if files:
        data["attachments"] = files
    if isinstance(message, AIMessage) and message.tool_calls:
        data["tool_calls"] = [
            {"id": call.get("id"), "name": call["name"], "args": call["args"]} for call in message.tool_calls
        ]
    if isinstance(message, ToolMessage):
        data["tool_call_id"] = message.tool_call_id
        data["name"] = message.name
        data["tool_status"] = message.status
        if isinstance(message.artifact, dict) and message.artifact.get("type") in ("image", "table"):
            data["artifact"] = message.artifact
    return data
