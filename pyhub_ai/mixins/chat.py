"""One chat turn: store the user's message, stream the model's reply, store the reply."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.db import DatabaseError
from django.utils.translation import gettext
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, message_chunk_to_message

from ..display import message_object
from ..conf import conf
from ..history import DjangoChatMessageHistory, DuplicateMessage, Turn
from ..llm import STARTER_FLAG
from ..locks import ThreadBusy, thread_key, thread_lock
from ..models import ConversationMessage
from .protocol import FrameError

logger = logging.getLogger("pyhub_ai.chat")

Status = ConversationMessage.Status


class ChatMixin:
    """Runs turns, one at a time per connection, as a task the consumer can cancel.

    ``start_turn()`` (called by the consumer for a ``user_message`` frame) and
    ``start_first_turn()`` (called after connect) create the task; ``run_turn()`` is the turn;
    ``cancel_turn()`` (called on disconnect) stops it, and the partial reply is kept as
    ``interrupted``. ``on_conversation_complete()`` is called after a turn is stored.

    For the client a turn ends with its last frame (``end_reply()``: ``stream_end`` or an
    error); the task may still be finishing (the hook, releasing the thread lock), and the
    next ``start_turn()`` waits for that.
    """

    _turn_task: asyncio.Task | None = None
    _reply_open: bool = False

    def is_turn_running(self) -> bool:
        """Whether the client is still waiting for the current reply."""
        return self._reply_open

    async def start_turn(self, text: str, idempotency_key: str = "") -> None:
        if self.is_turn_running():
            raise FrameError("turn_in_progress", gettext("Please wait until the current reply is finished."))
        await self._launch_turn(self.run_turn(HumanMessage(content=text), idempotency_key=idempotency_key))

    async def _launch_turn(self, turn: Any) -> None:
        if self._turn_task is not None:
            await asyncio.shield(self._turn_task)  # only its epilogue is left
        self._reply_open = True
        self._turn_task = asyncio.create_task(turn)

    async def end_reply(self, frame_type: str, **data: Any) -> None:
        """Send the turn's last frame; the client may send its next message after it."""
        self._reply_open = False
        await self.send_frame(frame_type, **data)

    async def fail_reply(self, code: str, message: str, **data: Any) -> None:
        """End the turn with an error frame."""
        self._reply_open = False
        await self.send_error(code, message, **data)

    async def start_first_turn(self) -> None:
        """Start the conversation with ``llm_first_user_message_template`` if the thread is empty.

        The starter message is stored hidden: it reaches the model, not the page.
        """
        first_message = self.get_llm_first_user_message()
        if first_message and not await self.get_history().ahas_messages():
            starter = HumanMessage(content=first_message, additional_kwargs={STARTER_FLAG: True})
            await self._launch_turn(self.run_turn(starter, visible=False))

    async def cancel_turn(self) -> None:
        """Stop the running turn (if any) and wait until its partial reply is stored."""
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()
            try:
                await self._turn_task
            except asyncio.CancelledError:
                pass

    async def run_turn(self, human_message: HumanMessage, *, visible: bool = True, idempotency_key: str = "") -> None:
        """Run one turn while holding the thread's lock, so turns from several tabs or workers
        never interleave and each reply is built from a complete history."""
        history = self.get_history()
        key = thread_key(self.conversation.pk, history.user_id, history.visitor_key)
        try:
            async with thread_lock(key, wait=conf.TURN_LOCK_WAIT):
                await self.run_locked_turn(history, human_message, visible=visible, idempotency_key=idempotency_key)
        except ThreadBusy:
            await self.fail_reply("conversation_busy", gettext("This conversation is busy with another reply. Please try again."))
        finally:
            self._reply_open = False

    async def run_locked_turn(
        self, history: DjangoChatMessageHistory, human_message: HumanMessage, *, visible: bool, idempotency_key: str
    ) -> None:
        """Store ``human_message``, stream the reply to the client, store the reply."""
        try:
            previous_messages = await history.aget_messages()
            turn = await history.astart_turn(human_message, visible=visible, idempotency_key=idempotency_key)
        except DuplicateMessage as duplicate:
            await self.end_reply("message", message=message_object(duplicate.existing), duplicate=True)
            return
        except DatabaseError as exc:
            logger.exception("Could not store the user's message.")
            await self.fail_reply("storage_error", gettext("Your message could not be saved. Please try again."), detail=str(exc))
            return
        if visible:
            await self.send_frame("message", message=message_object(turn.human))
        await self.send_frame("stream_start", turn_id=str(turn.turn_id), message_id=turn.ai.pk)

        reply: AIMessageChunk | None = None
        try:
            prompt = self.get_llm_prompt_messages(previous_messages, human_message)
            async for chunk in self.get_llm().astream(prompt):
                reply = chunk if reply is None else reply + chunk
                if chunk.text:
                    await self.send_frame("stream_delta", turn_id=str(turn.turn_id), text=chunk.text)
        except asyncio.CancelledError:
            await self._store_reply(history, turn, reply, Status.INTERRUPTED)
            raise
        except Exception as exc:
            logger.exception("The model failed during turn %s.", turn.turn_id)
            if await self._store_reply(history, turn, reply, Status.ERROR):
                await self.fail_reply("llm_error", gettext("The assistant could not answer. Please try again."), turn_id=turn.turn_id, detail=repr(exc))
            return

        if not await self._store_reply(history, turn, reply, Status.COMPLETE):
            return
        await self.end_reply("stream_end", turn_id=str(turn.turn_id), message=message_object(turn.ai))
        try:
            await self.on_conversation_complete(human_message, turn.ai.message, [])
        except Exception:
            logger.exception("on_conversation_complete() failed for turn %s.", turn.turn_id)

    async def _store_reply(
        self, history: DjangoChatMessageHistory, turn: Turn, reply: AIMessageChunk | None, status: str
    ) -> bool:
        """Store the (possibly partial) reply with ``status``; report a database failure."""
        ai_message = message_chunk_to_message(reply) if reply is not None else AIMessage(content="")
        try:
            await history.afinish_turn(turn, ai_message, status)
        except DatabaseError as exc:
            logger.exception("Could not store the reply of turn %s.", turn.turn_id)
            if status != Status.INTERRUPTED:
                await self.fail_reply("storage_error", gettext("The reply could not be saved."), turn_id=turn.turn_id, detail=str(exc))
            return False
        return True

    async def on_conversation_complete(
        self, human_message: BaseMessage, ai_message: BaseMessage, tools_output_list: list[Any] | None
    ) -> None:
        """Called after a turn is complete and stored; override to act on it. Default: nothing.

        Both messages are already in the database when this runs, so overriding it can never
        lose them (in django-pyhub-ai the default implementation did the storing).
        """
