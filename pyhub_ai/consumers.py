"""The chat consumers: the mixins bound to channels' ``AsyncJsonWebsocketConsumer``.

Only this module binds the websocket handlers (``connect``, ``receive``, ``receive_json``,
``disconnect``); every behaviour lives in a mixin hook that a subclass can override.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.db import aclose_old_connections
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import translation
from django.utils.translation import gettext

from .conf import conf
from .mixins import AgentMixin, ChatMixin, ConversationMixin, FrameProtocolMixin, GraphMixin, LLMMixin, ThreadGroupMixin
from .mixins.data import DataAnalystMixin
from .mixins.feedback import FeedbackMixin
from .mixins.mcp import MCPMixin
from .mixins.model_choice import ModelChoiceMixin
from .mixins.protocol import CLOSE_TOO_MANY_FRAMES, FrameError

logger = logging.getLogger("pyhub_ai.consumers")

#: Seconds between two runs of ``close_old_connections()`` by the consumers of a process
#: (``check_database_connections``).
CONNECTION_CHECK_INTERVAL = 1.0

_connections_checked_at = float("-inf")

#: The ``start_turn`` methods that take ``check_conversation`` (a subclass's own may not).
_STARTS_CHECKING_CONVERSATION = frozenset({ChatMixin.start_turn, GraphMixin.start_turn})


async def check_database_connections() -> None:
    """Close the database thread's connections that are too old (``CONN_MAX_AGE``) or broken,
    as channels does before every event and Django before every request, but at most every
    ``CONNECTION_CHECK_INTERVAL`` seconds (called by ``BaseAgentChatConsumer.dispatch``)."""
    global _connections_checked_at
    now = time.monotonic()
    if now - _connections_checked_at >= CONNECTION_CHECK_INTERVAL:
        _connections_checked_at = now
        await aclose_old_connections()


class BaseAgentChatConsumer(
    GraphMixin,
    MCPMixin,
    AgentMixin,
    ModelChoiceMixin,
    FeedbackMixin,
    ChatMixin, ThreadGroupMixin, LLMMixin, FrameProtocolMixin, ConversationMixin, AsyncJsonWebsocketConsumer
):
    """Binds the websocket handlers to the mixins' hooks (see docs/protocol.md)."""

    language: str | None = None
    closing: bool = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the consumer; if the server cancels it (a worker shutting down), the reply in
        progress is stopped and stored as ``interrupted`` before the cancellation goes on."""
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            await asyncio.shield(self.cancel_turn())
            raise

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Handle every event in the visitor's language (error frames, the offline model).

        Channels' own ``dispatch`` runs ``close_old_connections()`` on the database thread
        before every event, as Django does before every request; here it runs at most every
        ``CONNECTION_CHECK_INTERVAL`` seconds per process (``check_database_connections``): a
        hand-off to that thread per client frame and per relayed frame otherwise, and with
        ``CONN_HEALTH_CHECKS`` a ``SELECT 1`` before the event's first query.
        """
        if self.language is None:
            self.language = self.get_language()
        with translation.override(self.language):
            handler = getattr(self, get_handler_name(message), None)
            if handler is None:
                raise ValueError(f"No handler for message type {message['type']}")
            await check_database_connections()
            await handler(message)

    async def connect(self) -> None:
        """Accept, check access, then send ``welcome`` and the latest ``history`` page (then the
        ``approval_request`` the thread's graph waits for, if any).

        The handshake is accepted first so that a refusal can carry its close code (4401 or
        4403) to the page; nothing else is sent or read before the checks pass.
        """
        await self.accept()
        refusal = await self.check_access(recheck_session=False)
        if refusal is not None:
            await self.close(refusal)
            return
        await self.join_thread_group()
        await self.send_welcome()
        rows = await self.send_history_page()
        if not rows:
            await self.start_first_turn()
        else:
            await self.send_pending_approval(rows)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Check the frame rate and access again, then decode a text frame as JSON; answer
        binary, oversized or non-JSON frames with an error frame.

        Access is checked as ``check_access()`` checks it, before anything else of the frame
        is answered. Its last part, the conversation, is checked in ``receive_json`` (for a
        ``user_message`` that starts a turn, in the turn's first database call)."""
        if self.conversation is None or self.closing:
            return
        if self.is_flooding(asyncio.get_running_loop().time()):
            await self.send_error("too_many_frames", gettext("Too many messages. Please reconnect."), detail="frame flood")
            await self.refuse(CLOSE_TOO_MANY_FRAMES)
            return
        refusal = await self.check_access(conversation=False)
        if refusal is not None:
            await self.refuse(refusal)
            return
        try:
            if text_data is None:
                raise FrameError("invalid_frame", gettext("Only text messages are accepted."), "binary frame")
            if len(text_data) > self.get_max_frame_size():
                raise self.message_too_long(f"{len(text_data)}-character frame")
            try:
                content = await self.decode_json(text_data)
            except (ValueError, RecursionError) as exc:
                raise FrameError("invalid_frame", gettext("Messages must be JSON objects."), f"not JSON: {exc!r:.200}") from exc
        except FrameError as error:
            await self.refuse_frame(error)
            return
        await self.receive_json(content)

    async def refuse_frame(self, error: FrameError) -> None:
        """Answer a frame that breaks the protocol with its error frame, unless the visitor may
        no longer use the conversation: then the socket is closed instead."""
        if not await self.refused_conversation():
            await self.send_error(error.code, error.message, detail=error.detail)

    async def refused_conversation(self) -> bool:
        """Check the conversation (``check_conversation_access()``); close the socket and say
        ``True`` when the visitor may no longer use it."""
        refusal = await self.check_conversation_access()
        if refusal is not None:
            await self.refuse(refusal)
            return True
        return False

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        try:
            frame = self.parse_client_frame(content)
        except FrameError as error:
            await self.refuse_frame(error)
            return
        # A user_message that starts a turn of the model (a graph reads its pending approval
        # first) has its conversation checked in the turn's first database call
        # (ConversationMixin.can_check_conversation_in_turn); every other frame now.
        in_turn = (
            frame.type == "user_message" and not self.is_turn_running() and self.get_graph() is None
            and type(self).start_turn in _STARTS_CHECKING_CONVERSATION and self.can_check_conversation_in_turn()
        )  # fmt: skip
        if not in_turn and await self.refused_conversation():
            return
        try:
            if frame.type == "user_message":
                await self.start_turn(frame.text, frame.idempotency_key, frame.attachments, check_conversation=in_turn)
            elif frame.type == "load_history":
                await self.send_history_page(before=frame.before)
            elif frame.type == "stop":
                await self.stop_reply()
            elif frame.type == "select_model":
                await self.select_llm_model(frame.model)
            elif frame.type == "edit_message":
                await self.start_edit(frame.message_id, frame.text, frame.idempotency_key)
            elif frame.type == "regenerate":
                await self.start_regenerate(frame.message_id)
            elif frame.type == "switch_branch":
                await self.switch_branch(frame.message_id)
            elif frame.type == "feedback":
                await self.give_feedback(frame.message_id, frame.rating, frame.text)
            elif frame.type == "approval":
                await self.start_approval(frame.interrupt_id, list(frame.decisions))
        except FrameError as error:
            await self.send_error(error.code, error.message, detail=error.detail)

    async def refuse(self, code: int) -> None:
        """Close a connection that may no longer chat; a reply it started is stopped and kept."""
        self.closing = True
        await self.cancel_turn()
        await self.close(code)

    async def pyhub_ai_frame(self, event: dict[str, Any]) -> None:
        """A turn frame from another connection of the same thread (see ``ThreadGroupMixin``).

        Access is checked again before each one but the streamed text (``stream_delta``): a tab
        whose user signed out, or lost the conversation, since it last sent a frame is closed
        before it shows the thread's next turn.
        """
        if event["sender"] == self.channel_name or self.closing:
            return
        frame = event["frame"]
        if frame["type"] != "stream_delta":
            refusal = await self.check_access()
            if refusal is not None:
                await self.refuse(refusal)
                return
        await self.send_json(frame)

    async def pyhub_ai_presence(self, event: dict[str, Any]) -> None:
        """Another connection of the same thread joined or left (see ``ThreadGroupMixin``)."""
        await self.on_peer_presence(event)

    async def disconnect(self, code: int) -> None:
        """Stop a reply in progress; what was streamed so far is stored as ``interrupted``."""
        await self.cancel_turn()
        await self.leave_thread_group()


class AgentChatConsumer(BaseAgentChatConsumer):
    """A websocket LLM chat room that stores every turn.

    Subclass it, set ``llm_model`` (an ``LLMModel`` or ``"provider:model"``),
    ``llm_temperature``, ``llm_system_prompt_template`` (``{placeholders}`` filled from
    ``get_llm_prompt_context_data()``) and optionally ``llm_first_user_message_template``,
    then route it under a URL with a ``conversation_pk`` kwarg. ``can_accept()`` lets in
    signed-in users by default.
    """


class _FromSetting:
    """A class attribute whose value is a pyhub_ai setting, read at access time (so
    ``override_settings`` works); a subclass may set a plain value instead."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type) -> Any:
        return getattr(conf, self.name)


class ChatConsumer(AgentChatConsumer):
    """The ready-made chat that ``pyhub_ai.routing`` serves by default (``PYHUB_AI_CHAT_CONSUMER``).

    Its model and system prompt are the ``PYHUB_AI_LLM_MODEL`` and ``PYHUB_AI_LLM_SYSTEM_PROMPT``
    settings; to change more, subclass ``AgentChatConsumer`` and name your class in
    ``PYHUB_AI_CHAT_CONSUMER``.
    """

    llm_model = _FromSetting("LLM_MODEL")
    llm_system_prompt_template = _FromSetting("LLM_SYSTEM_PROMPT")


class DataAnalystChatConsumer(DataAnalystMixin, AgentChatConsumer):
    """A chat room that answers questions about a table of data.

    Set ``dataframe_path`` (CSV or Excel) or implement ``get_dataframe()``, and optionally
    ``column_guideline``. The model gets safe, structured tools (describe, query, aggregate,
    value counts, charts rendered on the server); it never runs code of its own. Needs
    ``pip install "pyhub_ai[data]"`` (pandas, matplotlib).
    """
