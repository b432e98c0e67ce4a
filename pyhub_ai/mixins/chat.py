"""One chat turn: store the user's message, stream the model's reply, store the reply."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.db import DatabaseError
from django.utils.translation import gettext
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, message_chunk_to_message

from ..display import message_object
from ..history import Turn
from ..llm import STARTER_FLAG
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
    """

    _turn_task: asyncio.Task | None = None

    def is_turn_running(self) -> bool:
        return self._turn_task is not None and not self._turn_task.done()

    async def start_turn(self, text: str) -> None:
        if self.is_turn_running():
            raise FrameError("turn_in_progress", gettext("Please wait until the current reply is finished."))
        self._turn_task = asyncio.create_task(self.run_turn(HumanMessage(content=text)))

    async def start_first_turn(self) -> None:
        """Start the conversation with ``llm_first_user_message_template`` if the thread is empty.

        The starter message is stored hidden: it reaches the model, not the page.
        """
        first_message = self.get_llm_first_user_message()
        if first_message and not await self.get_history().ahas_messages():
            starter = HumanMessage(content=first_message, additional_kwargs={STARTER_FLAG: True})
            self._turn_task = asyncio.create_task(self.run_turn(starter, visible=False))

    async def cancel_turn(self) -> None:
        """Stop the running turn (if any) and wait until its partial reply is stored."""
        if self.is_turn_running():
            self._turn_task.cancel()
            try:
                await self._turn_task
            except asyncio.CancelledError:
                pass

    async def run_turn(self, human_message: HumanMessage, *, visible: bool = True) -> None:
        """Store ``human_message``, stream the reply to the client, store the reply."""
        history = self.get_history()
        try:
            previous_messages = await history.aget_messages()
            turn = await history.astart_turn(human_message, visible=visible)
        except DatabaseError as exc:
            logger.exception("Could not store the user's message.")
            await self.send_error("storage_error", gettext("Your message could not be saved. Please try again."), detail=str(exc))
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
            await self._store_reply(turn, reply, Status.INTERRUPTED)
            raise
        except Exception as exc:
            logger.exception("The model failed during turn %s.", turn.turn_id)
            if await self._store_reply(turn, reply, Status.ERROR):
                await self.send_error("llm_error", gettext("The assistant could not answer. Please try again."), turn_id=turn.turn_id, detail=repr(exc))
            return

        if not await self._store_reply(turn, reply, Status.COMPLETE):
            return
        await self.send_frame("stream_end", turn_id=str(turn.turn_id), message=message_object(turn.ai))
        try:
            await self.on_conversation_complete(human_message, turn.ai.message, [])
        except Exception:
            logger.exception("on_conversation_complete() failed for turn %s.", turn.turn_id)

    async def _store_reply(self, turn: Turn, reply: AIMessageChunk | None, status: str) -> bool:
        """Store the (possibly partial) reply with ``status``; report a database failure."""
        ai_message = message_chunk_to_message(reply) if reply is not None else AIMessage(content="")
        try:
            await self.get_history().afinish_turn(turn, ai_message, status)
        except DatabaseError as exc:
            logger.exception("Could not store the reply of turn %s.", turn.turn_id)
            if status != Status.INTERRUPTED:
                await self.send_error("storage_error", gettext("The reply could not be saved."), turn_id=turn.turn_id, detail=str(exc))
            return False
        return True

    async def on_conversation_complete(
        self, human_message: BaseMessage, ai_message: BaseMessage, tools_output_list: list[Any] | None
    ) -> None:
        """Called after a turn is complete and stored; override to act on it. Default: nothing.

        Both messages are already in the database when this runs, so overriding it can never
        lose them (in django-pyhub-ai the default implementation did the storing).
        """
