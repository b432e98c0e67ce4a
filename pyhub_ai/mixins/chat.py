"""One chat turn: store the user's message, stream the model's reply, store the reply."""
from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any
from urllib.parse import unquote

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.utils.translation import gettext
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, message_chunk_to_message

from asgiref.sync import sync_to_async

from .. import attachments, budgets
from ..branches import UnknownMessage
from ..conf import conf
from ..display import message_object
from ..history import DjangoChatMessageHistory, DuplicateMessage, ThreadAlreadyStarted, Turn
from ..ledger import ModelCall
from ..llm import STARTER_FLAG, OpenAIReplyStream, ReplyStream, parse_model, reply_stream
from ..locks import Lease, ThreadBusy, is_locked, thread_lock
from ..loop_clock import loop_clock
from ..models import Attachment, ConversationMessage
from ..usage import UsageLimited, Visitor, admit_model_call
from .protocol import FrameError

logger = logging.getLogger("pyhub_ai.chat")

#: The cookie that tells the server the visitor's time zone (``get_visitor_timezone``).
TIMEZONE_COOKIE = "pyhub_ai_timezone"

Status = ConversationMessage.Status


class ConversationRefused(Exception):
    """The visitor may no longer use the conversation (``run_turn`` with ``check_conversation``)."""

    def __init__(self, close_code: int) -> None:
        super().__init__(close_code)
        self.close_code = close_code


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


class TextRelay:
    """Relays a model step's text to the page and the database as it streams: ``stream_delta``
    frames at most every ``PYHUB_AI_STREAM_DELTA_INTERVAL`` seconds (tokens closer together wait
    for the next frame: each frame costs the server more than a token), and the text so far saved
    every ``PYHUB_AI_STREAM_SAVE_INTERVAL`` seconds (what a worker that dies can lose). Used by
    ``ChatMixin.stream_reply`` and ``GraphMixin.produce_reply``; ``texts`` collects the step's
    text for the caller.
    """

    def __init__(self, consumer: Any, history: DjangoChatMessageHistory, turn: Turn, texts: list[str]) -> None:
        self.consumer, self.history, self.turn, self.texts = consumer, history, turn, texts
        self.turn_id = str(turn.turn_id)
        self.unsent: list[str] = []
        # Read once per step: add() runs for every token.
        self.delta_interval, self.save_interval = conf.STREAM_DELTA_INTERVAL, conf.STREAM_SAVE_INTERVAL
        self.last_save = self.last_delta = asyncio.get_running_loop().time() - self.delta_interval

    async def add(self, text: str, now: float) -> None:
        """One streamed piece (possibly empty: a chunk with no text still lets the save run)."""
        if text:
            self.texts.append(text)
            self.unsent.append(text)
            if now - self.last_delta >= self.delta_interval:
                self.last_delta = now
                await self.consumer.send_turn_frame("stream_delta", turn_id=self.turn_id, text="".join(self.unsent))
                self.unsent.clear()
        if now - self.last_save >= self.save_interval:
            self.last_save = now
            await self.history.asave_partial(self.turn, "".join(self.texts))

    async def flush(self) -> None:
        """Send the text still waiting for its ``stream_delta`` (the step ended, or a frame of
        another kind follows)."""
        if self.unsent:
            await self.consumer.send_turn_frame("stream_delta", turn_id=self.turn_id, text="".join(self.unsent))
            self.unsent.clear()


async def _relay_stream(stream: ReplyStream | OpenAIReplyStream, relay: TextRelay, timeout: float) -> None:
    """Relay every text of ``stream`` (``ChatMixin.stream_reply``); ``TimeoutError`` when the
    model sends nothing for ``timeout`` seconds."""
    clock = loop_clock(asyncio.get_running_loop())  # read once per reply: this loop runs for every token
    deadline_moved = clock()
    async with asyncio.timeout(timeout) as deadline:
        async for text in stream.texts():
            now = clock()
            if now - deadline_moved >= timeout / 10:  # moving it for every token costs a timer per token
                deadline.reschedule(now + timeout)
                deadline_moved = now
            await relay.add(text, now)


class ChatMixin:
    """Runs turns, one at a time per connection, as a task the consumer can cancel.

    ``start_turn()`` (called by the consumer for a ``user_message`` frame) and
    ``start_first_turn()`` (called after connect) create the task; ``run_turn()`` is the turn.
    ``stop_reply()`` (a ``stop`` frame) and ``cancel_turn()`` (disconnect) cancel it; what was
    streamed so far is kept as ``interrupted``. ``on_conversation_complete()`` is called after
    a turn is stored.

    For the client a turn ends with its last frame (``end_reply()``: ``stream_end`` or an
    error); the task may still be finishing (the hook, releasing the thread lock), and the
    next ``start_turn()`` waits for that.
    """

    _turn_task: asyncio.Task | None = None
    _reply_open: bool = False
    _streaming: bool = False
    _stop_requested: bool = False
    _reply_stream: ReplyStream | OpenAIReplyStream | None = None
    _turn_versions: dict[int, list[int]] | None = None

    def is_turn_running(self) -> bool:
        """Whether the client is still waiting for the current reply."""
        return self._reply_open

    async def start_turn(
        self, text: str, idempotency_key: str = "", attachment_ids: tuple[int, ...] = (), *, check_conversation: bool = False
    ) -> None:
        """Answer a ``user_message``; with ``check_conversation`` the turn's first database call
        checks the conversation first (``run_turn``)."""
        if self.is_turn_running():
            raise FrameError("turn_in_progress", gettext("Please wait until the current reply is finished."))
        turn = self.run_turn(
            HumanMessage(content=text), idempotency_key=idempotency_key, attachment_ids=attachment_ids, check_conversation=check_conversation
        )  # fmt: skip
        await self._launch_turn(turn)

    async def start_edit(self, message_id: int, text: str, idempotency_key: str = "") -> None:
        """Store ``text`` as a new version of the user's message ``message_id`` and answer it
        (an ``edit_message`` frame); the old version and what followed it stay, as a branch."""
        if self.is_turn_running():
            raise FrameError("turn_in_progress", gettext("Please wait until the current reply is finished."))
        await self._launch_turn(self.run_turn(HumanMessage(content=text), idempotency_key=idempotency_key, edit_of=message_id))

    async def start_regenerate(self, message_id: int) -> None:
        """Answer again the user's message that the reply ``message_id`` answers, as a new
        version of that reply (a ``regenerate`` frame; Retry of a failed reply too)."""
        if self.is_turn_running():
            raise FrameError("turn_in_progress", gettext("Please wait until the current reply is finished."))
        await self._launch_turn(self.run_turn(None, regenerate=message_id))

    async def switch_branch(self, message_id: int) -> None:
        """Show the branch through the version ``message_id`` of a message (a ``switch_branch``
        frame): its latest page goes to every tab of the thread as a ``history`` frame with
        ``reset``."""
        if self.is_turn_running() or await is_locked(self.history.thread_key):  # a turn of another tab too
            raise FrameError("turn_in_progress", gettext("Please wait until the current reply is finished."))
        try:
            await self.history.aswitch_branch(message_id)
        except UnknownMessage:
            raise FrameError("not_found", gettext("This message does not exist."), f"message {message_id} is not in this thread") from None
        _, page = await self.get_history_page()
        await self.send_turn_frame("history", reset=True, **page)

    def get_usage_visitor(self) -> Visitor:
        """Whom the model calls of this connection are counted for (``pyhub_ai.usage``): the
        signed-in user; else the anonymous session (if any) and the client's address."""
        user = self.get_user()
        client = self.scope.get("client") or ("",)
        tz = self.get_visitor_timezone()
        if user.is_authenticated:
            return Visitor(user_id=user.pk, address=client[0], timezone=tz)
        has_session = bool(getattr(self.scope.get("session"), "session_key", None))
        return Visitor(session=self.get_visitor_key() if has_session else "", address=client[0], timezone=tz)

    def get_visitor_timezone(self) -> str:
        """The visitor's IANA time zone (a ``quota_exceeded`` refusal says when the budget
        resets in it): the ``pyhub_ai_timezone`` cookie the chat page sets from the browser;
        empty (the current time zone) without one."""
        return unquote(self.scope.get("cookies", {}).get(TIMEZONE_COOKIE, ""))[:64]

    def get_usage_model(self) -> str:
        """The model the usage ledger records for this turn's calls (and whose
        ``PYHUB_AI_MODEL_PRICES`` entry prices them): ``get_llm_model()`` as ``"provider:model"``;
        ``"unknown"`` for a consumer that overrides ``get_llm()`` and names no model."""
        try:
            return ":".join(parse_model(self.get_llm_model()))[:200]
        except ImproperlyConfigured:
            return "unknown"


    async def start_first_turn(self) -> None:
        """Start an empty thread with ``llm_first_user_message_template`` (called by the
        consumer after connect, when the thread's first history page is empty).

        The starter message is stored hidden: it reaches the model, not the page. Whether the
        thread is still empty is decided in the transaction that takes the thread's lock
        (``run_turn(only_if_empty=True)``): of several tabs or workers opening an empty thread at
        once, one starts it; the others show its greeting (``on_thread_already_started()``).
        """
        first_message = self.get_llm_first_user_message()
        if first_message:
            starter = HumanMessage(content=first_message, additional_kwargs={STARTER_FLAG: True})
            await self._launch_turn(self.run_turn(starter, visible=False, only_if_empty=True))

    async def on_thread_already_started(self) -> None:
        """Another tab or worker started the thread this connection meant to start: send its
        newest messages (as ``message`` frames, which the page adds or updates by id), in case
        this tab joined too late to see that turn live."""
        self._reply_open = False
        rows, _ = await self.history.aget_page()
        for row in rows:
            await self.send_frame("message", message=message_object(row))

    async def _launch_turn(self, turn: Any) -> None:
        if self._turn_task is not None:
            await asyncio.shield(self._turn_task)  # only its epilogue is left
        self._reply_open = True
        self._stop_requested = False
        self._turn_task = asyncio.create_task(turn)

    async def stop_reply(self) -> None:
        """Stop the reply streaming on this connection; it ends with ``stream_end`` (interrupted).

        A stop that arrives before the reply started streaming, or after it ended, does nothing.
        """
        if self._streaming and not self._stop_requested:
            self._stop_requested = True
            self._turn_task.cancel()

    async def cancel_turn(self) -> None:
        """Stop the reply in progress (if any) and wait until its partial reply is stored; a
        turn whose reply was already sent is left to finish (``on_conversation_complete``)."""
        if self._turn_task is None or self._turn_task.done():
            return
        if self._reply_open:
            self._turn_task.cancel()
        try:
            await self._turn_task
        except asyncio.CancelledError:
            pass

    async def end_reply(self, frame_type: str, **data: Any) -> None:
        """Send the turn's last frame (to every tab of the thread); the client may send its next
        message after it."""
        self._reply_open = False
        await self.send_turn_frame(frame_type, **data)

    async def fail_reply(self, code: str, message: str, **data: Any) -> None:
        """End the turn with an error frame (to this connection only)."""
        self._reply_open = False
        await self.send_error(code, message, **data)

    async def fail_turn(self, turn: Turn, code: str, message: str) -> None:
        """End a turn whose reply failed with an error frame, to every tab of the thread."""
        self._reply_open = False
        await self.send_turn_frame("error", code=code, message=message, turn_id=str(turn.turn_id))

    async def run_turn(
        self,
        human_message: HumanMessage | None,
        *,
        visible: bool = True,
        idempotency_key: str = "",
        only_if_empty: bool = False,
        edit_of: int | None = None,
        regenerate: int | None = None,
        attachment_ids: tuple[int, ...] = (),
        check_conversation: bool = False,
    ) -> None:
        """Run one turn while holding the thread's lock, so turns from several tabs or workers
        never interleave and each reply is built from a complete history.

        With ``check_conversation`` the database call that takes the lock first decides whether
        the visitor may still use the conversation (``conversation_refusal()``, what the
        consumer's per-frame check would have decided); a refusal stores nothing and closes the
        socket with its code.

        The database call that takes the lock also checks, with ``only_if_empty``, that the
        thread is still empty (else ``on_thread_already_started()``), then counts the model call
        (``pyhub_ai.usage.admit_model_call`` for ``get_usage_visitor()``: a refusal stores
        nothing) and stores the human message (``DjangoChatMessageHistory.start_turn``); the one
        that stores the reply releases the lock. A visitor whom a budget limits holds a second
        lock around it (``pyhub_ai.budgets.spending_lock``): their turns run one at a time.

        ``edit_of`` and ``regenerate`` (message ids) make the turn a new branch
        (``DjangoChatMessageHistory.start_turn``); a message that is not this thread's is
        refused with ``not_found`` before anything is stored or counted. ``attachment_ids`` (the
        visitor's unused uploads of this conversation, ``pyhub_ai.attachments.claim``) are
        claimed in the same transaction and named by the human message.
        """
        history = self.history
        visitor = self.get_usage_visitor()

        def start(lease: Lease) -> Turn:  # runs in the transaction that takes the lock
            if check_conversation and (refusal := self.conversation_refusal()) is not None:
                raise ConversationRefused(refusal)
            if only_if_empty and history.has_messages():
                raise ThreadAlreadyStarted()
            admit_model_call(visitor)
            files = attachments.claim(list(attachment_ids), history.thread_fields()) if attachment_ids else []
            message = attachments.human_message(human_message.text, files) if files else human_message
            turn = history.start_turn(
                message, visible=visible, idempotency_key=idempotency_key, lease=lease, edit_of=edit_of, regenerate=regenerate
            )
            if files:
                Attachment.objects.filter(pk__in=[f.pk for f in files]).update(message=turn.human)
            return turn

        lease = None
        try:
            async with budgets.spending_lock(visitor):
                async with thread_lock(history.thread_key, wait=conf.TURN_LOCK_WAIT, on_acquire=start) as lease:
                    turn = lease.value
                    branch = edit_of is not None or regenerate is not None
                    await self.run_locked_turn(history, turn, turn.human.message, visible=visible, branch=branch)
        except ConversationRefused as refusal:  # nothing was stored
            # The consumer's refuse() minus cancel_turn(): this task is the turn it would wait for.
            self._reply_open = False
            self.closing = True
            await self.close(refusal.close_code)
        except ThreadBusy:
            await self.fail_reply("conversation_busy", gettext("This conversation is busy with another reply. Please try again."))
        except ThreadAlreadyStarted:  # nothing was stored
            await self.on_thread_already_started()
        except UsageLimited as refusal:  # nothing was stored
            await self.fail_reply(refusal.code, refusal.client_message)
        except FrameError as refusal:  # nothing was stored
            await self.fail_reply(refusal.code, refusal.message)
        except UnknownMessage as unknown:  # nothing was stored: another thread's message is as unknown as a missing one
            await self.fail_reply("not_found", gettext("This message does not exist."), detail=f"message {unknown} is not in this thread")
        except LookupError:  # attachments that are not this visitor's unused uploads here: nothing was stored
            await self.fail_reply("not_found", gettext("This attachment does not exist."), detail=f"attachments {attachment_ids}")
        except DuplicateMessage as duplicate:
            self._reply_open = False
            await self.send_frame("message", message=message_object(duplicate.existing), duplicate=True)
        except DatabaseError as exc:
            if lease is not None:  # the turn ran; only releasing its lock failed
                logger.exception("Could not release the lock of a finished turn; it expires within %s s.", conf.TURN_LOCK_LEASE)
                return
            logger.exception("Could not store the user's message.")
            await self.fail_reply("storage_error", gettext("Your message could not be saved. Please try again."), detail=str(exc))
        except Exception:
            logger.exception("A turn failed.")
            if self._reply_open:  # the client still waits for the end of this turn
                await self.fail_reply("server_error", gettext("Something went wrong. Please try again."))
        finally:
            self._reply_open = False

    async def run_locked_turn(
        self, history: DjangoChatMessageHistory, turn: Turn, human_message: HumanMessage, *, visible: bool, branch: bool = False
    ) -> None:
        """Stream the reply to the stored ``human_message`` to the client, then store the reply.

        A ``branch`` turn (an edit, a regenerated reply) first sends every tab the new branch's
        latest page (``history`` with ``reset``) instead of the human message."""
        self._turn_versions = {}
        if branch:
            _, page = await self.get_history_page()
            self._turn_versions = {message["id"]: message["versions"] for message in page["messages"] if "versions" in message}
            await self.send_turn_frame("history", reset=True, **page)
        elif visible:
            await self.send_turn_frame("message", message=message_object(turn.human, message=human_message))
        await self.send_turn_frame("stream_start", turn_id=str(turn.turn_id), message_id=turn.ai.pk)

        self._streaming = True
        self._reply_stream = None  # nothing streamed yet: a failure before the stream stores an empty reply
        try:
            prompt = self.get_llm_prompt_messages(turn.previous_messages, human_message)
            if attachments.has_files(prompt):
                prompt = await sync_to_async(attachments.for_model)(prompt)
            reply = await self.produce_reply(history, turn, prompt)
        except asyncio.CancelledError:
            await self._store_reply(history, turn, self._partial_reply, Status.INTERRUPTED)
            if not self._stop_requested:  # the client has gone: only its other tabs hear of it
                await self.send_turn_frame("stream_end", to_self=False, turn_id=str(turn.turn_id), message=self.reply_object(turn))
                raise
            asyncio.current_task().uncancel()
            await self.end_reply("stream_end", turn_id=str(turn.turn_id), message=self.reply_object(turn))
            return
        except UsageLimited as refusal:  # a further step of a tool-calling turn (AgentMixin), not begun
            if await self._store_reply(history, turn, None, Status.ERROR):
                await self.fail_turn(turn, refusal.code, refusal.client_message)
            return
        except DatabaseError as exc:
            logger.error("Could not save the reply of turn %s while it streamed: %r", turn.turn_id, exc)
            if await self._store_reply(history, turn, self._partial_reply, Status.ERROR):
                await self.fail_turn(turn, "storage_error", gettext("The reply could not be saved."))
            return
        except Exception as exc:
            logger.error("The model failed during turn %s:\n%s", turn.turn_id, self.redact(format_exception(exc)))
            if await self._store_reply(history, turn, self._partial_reply, Status.ERROR):
                message = getattr(exc, "client_message", None) or (
                    gettext("The assistant took too long to answer. Please try again.")
                    if isinstance(exc, TimeoutError)
                    else gettext("The assistant could not answer. Please try again.")
                )
                await self.fail_turn(turn, "llm_error", message)
            return
        finally:
            self._streaming = False

        if not await self._store_reply(history, turn, reply, Status.COMPLETE):
            return
        await self.end_stored_turn(turn, human_message)

    async def end_stored_turn(self, turn: Turn, human_message: BaseMessage) -> None:
        """Called by ``run_locked_turn`` once the reply is stored: send ``stream_end``, then call
        ``on_conversation_complete()``. ``GraphMixin`` ends a turn that paused for an approval
        with ``approval_request`` instead."""
        await self.end_reply("stream_end", turn_id=str(turn.turn_id), message=self.reply_object(turn))
        try:
            ai_message = turn.reply if turn.reply is not None else turn.ai.message
            await self.on_conversation_complete(human_message, ai_message, self.get_tools_output_list())
        except Exception:
            logger.exception("on_conversation_complete() failed for turn %s.", turn.turn_id)

    def reply_object(self, turn: Turn) -> dict[str, Any]:
        """The message object of the turn's reply for ``stream_end``, with its ``versions``
        when the turn regenerated it."""
        return message_object(turn.ai, (self._turn_versions or {}).get(turn.ai.pk), message=turn.reply)

    async def produce_reply(self, history: DjangoChatMessageHistory, turn: Turn, prompt: list[BaseMessage]) -> AIMessageChunk | None:
        """The reply to ``prompt``: one streamed answer of ``get_llm()``. ``AgentMixin``
        overrides this with its tool-calling loop."""
        return await self.stream_reply(turn, prompt, self.get_llm(), history)

    def get_tools_output_list(self) -> list[Any]:
        """What the turn's tools returned, for ``on_conversation_complete()`` (none here)."""
        return []

    async def stream_reply(
        self, turn: Turn, prompt: list[BaseMessage], llm: Any, history: DjangoChatMessageHistory
    ) -> AIMessageChunk | None:
        """Stream ``llm``'s reply as ``stream_delta`` frames and return it whole.

        ``llm.reply_stream()`` picks how the model streams (the lighter OpenAI path, or
        LangChain's ``astream``). Tokens that arrive within ``PYHUB_AI_STREAM_DELTA_INTERVAL``
        seconds of the last ``stream_delta`` wait for the next one (fewer frames: each costs the
        server more than a token). The model may wait ``PYHUB_AI_LLM_TIMEOUT`` seconds (or the
        model's own smaller per-chunk timeout; less at most a tenth) for each token
        (``TimeoutError`` otherwise); the text so far is saved every
        ``PYHUB_AI_STREAM_SAVE_INTERVAL`` seconds, and ``_partial_reply`` gives the caller
        what came when the stream fails or is cancelled. The call is recorded in the usage
        ledger with its reply (``turn.call``, see ``pyhub_ai.ledger``).
        """
        self.begin_model_call(turn, prompt)
        self._reply_stream = stream = reply_stream(llm, prompt)
        relay = TextRelay(self, history, turn, [])
        timeout = conf.LLM_TIMEOUT
        # A task of its own reads the stream: each arrival of bytes then resumes _relay_stream
        # and the stream's generators only, not every coroutine of the turn that awaits this one
        # (run_turn, run_locked_turn, each mixin's produce_reply), 5 Python calls per arrival
        # (bench.turn_calls, 2026-11-30). Cancelling the turn cancels it: the turn awaits it.
        await asyncio.create_task(_relay_stream(stream, relay, min(timeout, stream.chunk_timeout or timeout)))
        await relay.flush()
        return self._partial_reply

    def begin_model_call(self, turn: Turn, prompt: list[BaseMessage]) -> None:
        """Note that the model is called now with ``prompt``: the history records the call in the
        usage ledger with the reply or tool step it stores next (``pyhub_ai.ledger``). Called by
        ``stream_reply()`` for each model step, and by ``GraphMixin`` for each step of a graph."""
        turn.call = ModelCall(self.get_usage_model(), prompt, budgets.subject_of(self.get_usage_visitor()))

    @property
    def _partial_reply(self) -> AIMessageChunk | None:
        """The reply streamed so far (``None`` before the model sent anything)."""
        return self._reply_stream.reply() if self._reply_stream is not None else None

    async def _store_reply(
        self, history: DjangoChatMessageHistory, turn: Turn, reply: AIMessageChunk | None, status: str
    ) -> bool:
        """Store the (possibly partial) reply with ``status``; report a database failure.

        The thread's lock is released in the same transaction, unless the thread has other tabs
        (``ThreadGroupMixin``): then ``thread_lock`` releases it once the turn's last frame was
        relayed to them, so no other tab's next turn can start before they were told this one
        ended (one more statement, for threads open in several tabs only)."""
        ai_message = message_chunk_to_message(reply) if reply is not None else AIMessage(content="")
        self.annotate_reply(ai_message)
        try:
            await history.afinish_turn(turn, ai_message, status, release=not getattr(self, "_peers", None))
        except DatabaseError as exc:
            logger.exception("Could not store the reply of turn %s.", turn.turn_id)
            if status != Status.INTERRUPTED:
                await self.fail_reply("storage_error", gettext("The reply could not be saved."), turn_id=turn.turn_id, detail=str(exc))
            return False
        turn.reply = ai_message  # what turn.ai stores now: its frames need not decode it again
        return True

    def annotate_reply(self, ai_message: AIMessage) -> None:
        """Called by ``_store_reply`` before a reply is stored; add to its metadata here
        (``ModelChoiceMixin`` records the chosen model). Default: nothing."""

    async def on_conversation_complete(
        self, human_message: BaseMessage, ai_message: BaseMessage, tools_output_list: list[Any] | None
    ) -> None:
        """Called after a turn is complete and stored; override to act on it. Default: nothing.

        Both messages are already in the database when this runs, so overriding it can never
        lose them (in django-pyhub-ai the default implementation did the storing).
        """
