"""The websocket frame protocol of docs/protocol.md: validating client frames, sending server frames."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext

from .. import attachments, feedback
from ..conf import conf
from ..converters import MAX_PK
from ..display import message_object
from ..models import ConversationMessage

logger = logging.getLogger("pyhub_ai.protocol")

PROTOCOL_VERSION = 1

#: What a client-chosen idempotency key may look like (a UUID fits).
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

#: Close codes (docs/protocol.md).
CLOSE_NOT_SIGNED_IN = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY_FRAMES = 4429

#: The window, in seconds, over which ``PYHUB_AI_FRAME_FLOOD_LIMIT`` counts a connection's frames.
FLOOD_WINDOW = 10.0


def _encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogates, which no database stores)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class FrameError(Exception):
    """A client frame that breaks the protocol; ``code`` and ``message`` go into the error frame."""

    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(detail or message)
        self.code = code
        self.message = message
        self.detail = detail or message


#: The frames that edit, regenerate and switch branches (docs/protocol.md, 1.1).
BRANCH_FRAMES = ("edit_message", "regenerate", "switch_branch")

#: An ``approval`` frame (1.4): at most this many decisions, each reason this long.
MAX_DECISIONS = 50
MAX_REASON_LENGTH = 2000


@dataclass(frozen=True)
class ClientFrame:
    """A validated client frame: ``type`` plus its checked values."""

    type: str
    text: str = ""
    before: int | None = None
    idempotency_key: str = ""
    model: str = ""
    message_id: int | None = None
    rating: str | None = None
    attachments: tuple[int, ...] = ()
    interrupt_id: str = ""
    decisions: tuple[dict[str, Any], ...] = ()


class FrameProtocolMixin:
    """Parses client frames and builds server frames; sends through ``send_json``."""

    _flood_window_start: float = 0.0
    _flood_count: int = 0

    def is_flooding(self, now: float) -> bool:
        """Count a client frame; ``True`` once the connection sent more than
        ``PYHUB_AI_FRAME_FLOOD_LIMIT`` frames within ``FLOOD_WINDOW`` seconds."""
        if now - self._flood_window_start > FLOOD_WINDOW:
            self._flood_window_start, self._flood_count = now, 0
        self._flood_count += 1
        return self._flood_count > conf.FRAME_FLOOD_LIMIT

    def message_too_long(self, detail: str) -> FrameError:
        """The error for a message (or a whole frame) over ``PYHUB_AI_MAX_MESSAGE_LENGTH``."""
        limit = self.get_max_message_length()
        return FrameError("message_too_long", gettext("The message is too long (at most %(limit)d characters).") % {"limit": limit}, detail)

    def get_max_frame_size(self) -> int:
        """The largest text frame decoded at all: room for the longest message, escaped."""
        return self.get_max_message_length() * 6 + 1024

    def get_max_message_length(self) -> int:
        return conf.MAX_MESSAGE_LENGTH

    def get_language(self) -> str:
        """The visitor's language: the language cookie, else Accept-Language, else LANGUAGE_CODE."""
        cookie = self.scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME)
        candidates = [cookie] if cookie else []
        headers = dict(self.scope.get("headers", []))
        accept = headers.get(b"accept-language", b"").decode("latin-1")
        candidates += [lang for lang, _ in translation.trans_real.parse_accept_lang_header(accept) if lang != "*"]
        for candidate in candidates:
            try:
                return translation.get_supported_language_variant(candidate)
            except LookupError:
                continue
        return settings.LANGUAGE_CODE

    def parse_client_frame(self, content: Any) -> ClientFrame:
        """Validate a decoded client frame against the protocol; raise ``FrameError`` if it breaks it."""
        if not isinstance(content, dict):
            raise FrameError("invalid_frame", gettext("Messages must be JSON objects."), f"frame is {type(content).__name__}")
        frame_type = content.get("type")
        if frame_type == "user_message":
            text = content.get("text")
            if not isinstance(text, str):
                raise FrameError("invalid_frame", gettext("The message has no text."), "user_message without a string 'text'")
            files = self.parse_attachment_ids(content)
            if not text.strip() and not files:
                raise FrameError("empty_message", gettext("The message is empty."))
            if "\x00" in text or not _encodable(text):
                raise FrameError("invalid_frame", gettext("The message contains characters that cannot be stored."), "NUL or lone surrogate")
            if len(text) > self.get_max_message_length():
                raise self.message_too_long(f"{len(text)} characters")
            key = content.get("idempotency_key", "")
            if not isinstance(key, str) or not IDEMPOTENCY_KEY.fullmatch(key or "x"):
                raise FrameError("invalid_frame", gettext("The message could not be read."), f"bad idempotency_key: {key!r}")
            return ClientFrame(type="user_message", text=text, idempotency_key=key, attachments=files)
        if frame_type == "load_history":
            before = content.get("before")
            if not isinstance(before, int) or isinstance(before, bool) or not 1 <= before <= MAX_PK:
                raise FrameError("invalid_frame", gettext("Cannot load earlier messages."), f"bad 'before': {before!r}")
            return ClientFrame(type="load_history", before=before)
        if frame_type == "stop":
            return ClientFrame(type="stop")
        if frame_type == "select_model":
            model = content.get("model")
            if not isinstance(model, str) or not 0 < len(model) <= 200:
                raise FrameError("invalid_model", gettext("This model cannot be chosen here."), f"bad 'model': {model!r:.200}")
            return ClientFrame(type="select_model", model=model)
        if frame_type in BRANCH_FRAMES:
            return self.parse_branch_frame(frame_type, content)
        if frame_type == "feedback":
            return self.parse_feedback_frame(content)
        if frame_type == "approval":
            return self.parse_approval_frame(content)
        raise FrameError("invalid_frame", gettext("Unknown message type."), f"unknown type {frame_type!r}")

    def parse_attachment_ids(self, content: dict[str, Any]) -> tuple[int, ...]:
        """A ``user_message``'s optional ``attachments``: ids of the visitor's uploads (1.3)."""
        ids = content.get("attachments", [])
        if (
            not isinstance(ids, list) or len(ids) > attachments.MAX_PER_MESSAGE
            or not all(isinstance(pk, int) and not isinstance(pk, bool) and 1 <= pk <= MAX_PK for pk in ids)
        ):
            raise FrameError("invalid_frame", gettext("The attachments could not be read."), f"bad 'attachments': {ids!r:.100}")
        return tuple(ids)

    def parse_approval_frame(self, content: dict[str, Any]) -> ClientFrame:
        """``approval`` (1.4): ``interrupt_id`` and ``decisions``, one per pending tool call:
        ``{"type": "approve"}``, ``{"type": "edit", "edited_action": {"name", "args"}}`` or
        ``{"type": "reject", "message"?}``; returned in the shape LangChain's
        ``HumanInTheLoopMiddleware`` resumes with. Whether they answer the thread's pending
        interrupt is checked by ``GraphMixin.run_approval``."""

        def refuse(detail: str) -> FrameError:
            return FrameError("invalid_frame", gettext("The approval could not be read."), detail)

        interrupt_id, given = content.get("interrupt_id"), content.get("decisions")
        if not isinstance(interrupt_id, str) or not 0 < len(interrupt_id) <= 128:
            raise refuse(f"bad 'interrupt_id': {interrupt_id!r:.100}")
        if not isinstance(given, list) or not 0 < len(given) <= MAX_DECISIONS:
            raise refuse("bad 'decisions'")
        decisions: list[dict[str, Any]] = []
        for decision in given:
            kind = decision.get("type") if isinstance(decision, dict) else None
            if kind == "approve":
                decisions.append({"type": "approve"})
            elif kind == "reject":
                reason = decision.get("message", "")
                if not isinstance(reason, str) or "\x00" in reason or not _encodable(reason) or len(reason) > MAX_REASON_LENGTH:
                    raise refuse("bad reject 'message'")
                decisions.append({"type": "reject", **({"message": reason.strip()} if reason.strip() else {})})
            elif kind == "edit":
                action = decision.get("edited_action")
                name = action.get("name") if isinstance(action, dict) else None
                args = action.get("args") if isinstance(action, dict) else None
                if not isinstance(name, str) or not 0 < len(name) <= 200 or not isinstance(args, dict):
                    raise refuse("bad 'edited_action'")
                decisions.append({"type": "edit", "edited_action": {"name": name, "args": args}})
            else:
                raise refuse(f"bad decision type: {kind!r:.100}")
        return ClientFrame(type="approval", interrupt_id=interrupt_id, decisions=tuple(decisions))

    def parse_feedback_frame(self, content: dict[str, Any]) -> ClientFrame:
        """``feedback``: ``message_id``, ``rating`` ("up", "down", or ``null`` to remove it) and
        an optional ``comment``."""
        frame = self.parse_branch_frame("switch_branch", content)
        rating, comment = content.get("rating"), content.get("comment", "")
        if rating not in (None, *feedback.RATINGS):
            raise FrameError("invalid_frame", gettext("The feedback could not be read."), f"bad 'rating': {rating!r:.100}")
        if not isinstance(comment, str) or "\x00" in comment or not _encodable(comment) or len(comment) > feedback.MAX_COMMENT_LENGTH:
            raise FrameError("invalid_frame", gettext("The feedback could not be read."), "bad 'comment'")
        return ClientFrame(type="feedback", message_id=frame.message_id, rating=rating, text=comment.strip())

    def parse_branch_frame(self, frame_type: str, content: dict[str, Any]) -> ClientFrame:
        """``edit_message`` (``message_id``, ``text``, optional ``idempotency_key``),
        ``regenerate`` and ``switch_branch`` (``message_id``)."""
        message_id = content.get("message_id")
        if not isinstance(message_id, int) or isinstance(message_id, bool) or not 1 <= message_id <= MAX_PK:
            raise FrameError("invalid_frame", gettext("The message could not be read."), f"bad 'message_id': {message_id!r:.100}")
        if frame_type != "edit_message":
            return ClientFrame(type=frame_type, message_id=message_id)
        edit = self.parse_client_frame({**content, "type": "user_message"})
        return ClientFrame(type=frame_type, message_id=message_id, text=edit.text, idempotency_key=edit.idempotency_key)

    async def send_frame(self, frame_type: str, **data: Any) -> None:
        await self.send_json({"type": frame_type, **data})

    async def send_error(self, code: str, message: str, *, turn_id: Any = None, detail: str = "") -> None:
        """Send a short, safe error frame; the detail goes to the log only."""
        logger.info("Sent error frame %s to %s: %s", code, self.scope.get("path", "?"), detail or message)
        data: dict[str, Any] = {"code": code, "message": message}
        if turn_id is not None:
            data["turn_id"] = str(turn_id)
        await self.send_frame("error", **data)

    async def send_welcome(self) -> None:
        await self.send_frame(
            "welcome",
            protocol=PROTOCOL_VERSION,
            conversation=str(self.conversation.pk),
            max_message_length=self.get_max_message_length(),
            **self.model_choices_frame_data(),
        )

    async def send_history_page(self, before: int | None = None) -> list[ConversationMessage]:
        """Send one ``history`` frame (the latest page, or the page older than ``before``)."""
        rows, data = await self.get_history_page(before)
        await self.send_frame("history", **data)
        return rows

    async def get_history_page(self, before: int | None = None) -> tuple[list[ConversationMessage], dict[str, Any]]:
        """The rows of a page of the branch shown and the ``history`` frame's keys for them
        (each message with its ``versions``)."""
        rows, has_more = await self.history.aget_page(before=before)
        versions = await self.history.aget_versions(rows)
        thread = {"conversation_id": self.conversation.pk, "user_id": self.history.user_id, "visitor_key": self.history.visitor_key}
        given = await sync_to_async(feedback.feedback_of)(thread, rows)
        messages = [message_object(row, versions.get(row.pk)) for row in rows]
        for message in messages:
            if message["id"] in given:
                message["feedback"] = given[message["id"]]
        return rows, {"messages": messages, "has_more": has_more, "before": before}
