"""LangGraph graphs as chat turns: a compiled graph, or LangChain's ``create_agent``, answers.

The thread's LangGraph ``thread_id`` is its conversation thread
(``pyhub_ai.checkpoint.conversation_thread_id``) and its checkpointer a ``DjangoSaver``, so the
graph's state is the conversation the page, history, admin and export show: the turn stores its
messages as a plain turn does (the human message, each tool step, the reply) and the graph's
checkpoint refers to those rows instead of copying them. LangGraph is optional
(``pip install "pyhub_ai[langgraph]"``): this module imports it only when a consumer has a graph.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.utils.translation import gettext
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage

from .. import budgets
from ..conf import conf
from ..display import message_object
from ..history import DjangoChatMessageHistory, Turn
from ..locks import ThreadBusy, thread_lock
from ..models import ConversationMessage
from ..usage import UsageLimited, admit_model_call
from .chat import TextRelay
from .protocol import FrameError

if TYPE_CHECKING:
    from ..checkpoint import DjangoSaver

logger = logging.getLogger("pyhub_ai.graph")

_default_checkpointer: DjangoSaver | None = None

#: The decisions on a pending tool call that the chat page offers (``HumanInTheLoopMiddleware``'s).
DECISIONS = ("approve", "edit", "reject")


def default_checkpointer() -> DjangoSaver:
    """The process's ``DjangoSaver`` for graph turns: one, so its memory of recent message
    lists serves every connection."""
    global _default_checkpointer
    if _default_checkpointer is None:
        from ..checkpoint import DjangoSaver

        _default_checkpointer = DjangoSaver()
    return _default_checkpointer


class _StreamedText:
    """What the graph's model streamed so far in this step (``ChatMixin._partial_reply``); with
    nothing streamed, ``base`` (the paused step a resumed turn completes), so a resumed turn that
    fails before its tools answered keeps that step's tool calls."""

    def __init__(self, base: AIMessage | None = None) -> None:
        self.texts: list[str] = []
        self.base = base

    def reply(self) -> AIMessageChunk | AIMessage | None:
        if self.texts:
            return AIMessageChunk(content="".join(self.texts))
        return self.base


@dataclass(frozen=True)
class PendingApproval:
    """A graph's pending interrupt that asks for decisions on tool calls: ``interrupt_id`` (the
    LangGraph ``Interrupt.id``) and one request per tool call (``tool_call_id``, ``name``,
    ``args``, ``description``, ``allowed_decisions``), as the ``approval_request`` frame sends them."""

    interrupt_id: str
    requests: list[dict[str, Any]]

    def frame_data(self) -> dict[str, Any]:
        return {"interrupt_id": self.interrupt_id, "requests": self.requests}

    def check(self, decisions: list[dict[str, Any]]) -> None:
        """Raise ``FrameError`` unless ``decisions`` answer the requests, one each, in order,
        each with a decision the request allows (an edit keeps the tool)."""
        if len(decisions) != len(self.requests):
            raise FrameError("invalid_frame", gettext("The approval could not be read."), f"{len(decisions)} decisions for {len(self.requests)} requests")
        for decision, request in zip(decisions, self.requests):
            if decision["type"] not in request["allowed_decisions"]:
                raise FrameError("invalid_frame", gettext("The approval could not be read."), f"{decision['type']!r} is not allowed for {request['name']!r}")
            if decision["type"] == "edit" and decision["edited_action"]["name"] != request["name"]:
                raise FrameError("invalid_frame", gettext("The approval could not be read."), "an edit may not change the tool")


def pending_approval(interrupts: Any, messages: list[BaseMessage]) -> PendingApproval | None:
    """The approval that ``interrupts`` (a graph state's, or an ``__interrupt__`` update's) ask
    for: the first whose value is a ``HITLRequest`` (``action_requests`` and ``review_configs``,
    as LangChain's ``HumanInTheLoopMiddleware`` raises it, or a graph's own ``interrupt()`` with
    that value). Each action is matched, in order, to a tool call of the last AI message of
    ``messages`` (its id). ``None`` when no interrupt asks for that."""
    for pending in interrupts or ():
        value = getattr(pending, "value", None)
        if isinstance(value, dict) and isinstance(value.get("action_requests"), list):
            break
    else:
        return None
    allowed = {
        config.get("action_name"): [kind for kind in config.get("allowed_decisions") or () if kind in DECISIONS]
        for config in value.get("review_configs") or () if isinstance(config, dict)
    }  # fmt: skip
    calls = next((list(message.tool_calls) for message in reversed(messages) if isinstance(message, AIMessage)), [])
    requests = []
    for action in value["action_requests"]:
        name = str(action.get("name", ""))
        call = next((call for call in calls if call["name"] == name), None)
        if call is not None:
            calls.remove(call)
        requests.append({
            "tool_call_id": call["id"] if call is not None else None,
            "name": name,
            "args": action.get("args") or {},
            "description": str(action.get("description") or ""),
            "allowed_decisions": allowed.get(name, []),
        })  # fmt: skip
    return PendingApproval(str(pending.id), requests)


class GraphMixin:
    """Runs a turn with a LangGraph graph when the consumer has one (``graph`` or
    ``get_graph()``): any compiled graph whose state has a ``messages`` channel, such as
    ``create_agent(model, tools)``.

    ``produce_reply()`` (called by ``ChatMixin.run_locked_turn``) streams the graph with the
    thread's ``get_graph_config()`` and ``get_checkpointer()``: the model's tokens become
    ``stream_delta`` frames, a step that calls tools a ``tool_call`` frame, the tools' results
    ``tool_result`` frames (stored with ``aadd_tool_step``, as ``AgentMixin`` does), and the last
    AI message is the reply. Each model step after the first is counted by
    ``pyhub_ai.usage.admit_model_call`` before it runs; the turn may take ``PYHUB_AI_AGENT_TIMEOUT``
    seconds. A thread that has no checkpoint yet starts from the messages its conversation
    already holds (``DjangoSaver.thread_messages``). Without a graph, the consumer answers as
    before (``AgentMixin``, ``LLMMixin``).

    Approvals: a graph that pauses on an interrupt asking for decisions on tool calls
    (``HumanInTheLoopMiddleware``, see ``pending_approval``) ends the turn with an
    ``approval_request`` frame to every tab of the thread (``end_stored_turn``), the step that
    called the tools stored as the turn's reply. The interrupt lives in the thread's checkpoint,
    so ``send_pending_approval()`` (called by the consumer after ``history``) sends it again to a
    tab that connects later, on any worker, after a restart. ``start_approval()`` (an
    ``approval`` frame) resumes the graph with the decisions (``run_approval``), as the same
    turn; a new ``user_message`` is refused while the thread waits for an approval.
    """

    graph: Any = None
    checkpointer: DjangoSaver | None = None
    _resume: dict[str, Any] | None = None
    _approval: PendingApproval | None = None

    def get_graph(self) -> Any:
        """The compiled graph that answers (``graph``), or ``None`` for the plain model."""
        return self.graph

    def get_checkpointer(self) -> DjangoSaver:
        """The checkpointer of the graph's runs (``checkpointer``, else one per process)."""
        return self.checkpointer or default_checkpointer()

    def get_graph_thread_id(self, history: DjangoChatMessageHistory) -> str:
        """The LangGraph ``thread_id`` of the connection's conversation thread."""
        from ..checkpoint import conversation_thread_id

        return conversation_thread_id(history._conversation_id, _ThreadUser(history.user_id), history.visitor_key)

    def get_graph_config(self, history: DjangoChatMessageHistory) -> dict[str, Any]:
        """The config the graph runs with: the thread's ``thread_id``."""
        return {"configurable": {"thread_id": self.get_graph_thread_id(history)}}

    def get_run_graph(self) -> Any:
        """``get_graph()`` with ``get_checkpointer()`` (``None`` without a graph)."""
        graph = self.get_graph()
        if graph is None:
            return None
        saver = self.get_checkpointer()
        return graph if graph.checkpointer is saver else graph.copy(update={"checkpointer": saver})

    async def aget_pending_approval(self) -> PendingApproval | None:
        """The approval the thread's graph waits for, read from its checkpoint (``None``
        without a graph, or when nothing is pending)."""
        graph = self.get_run_graph()
        if graph is None:
            return None
        state = await graph.aget_state(self.get_graph_config(self.history))
        return pending_approval(state.interrupts, state.values.get("messages") or [])

    async def send_pending_approval(self, rows: list[ConversationMessage]) -> None:
        """Send this connection the ``approval_request`` its thread's graph waits for, if any
        (called by the consumer after the ``history`` page ``rows``)."""
        try:
            approval = await self.aget_pending_approval()
        except Exception:
            logger.exception("Could not read the graph state of %s.", self.scope.get("path", "?"))
            return
        if approval is None:
            return
        data = approval.frame_data()
        if rows and rows[-1].role == ConversationMessage.Role.AI:
            data.update(turn_id=str(rows[-1].turn_id), message_id=rows[-1].pk)
        await self.send_frame("approval_request", **data)

    async def check_no_pending_approval(self) -> None:
        """Raise ``approval_pending`` while the thread's graph waits for an approval (called
        before a new message, an edit or a regenerated reply starts a turn)."""
        if not self.is_turn_running() and await self.aget_pending_approval() is not None:
            raise FrameError("approval_pending", gettext("Please answer the pending approval first."))

    async def start_turn(
        self, text: str, idempotency_key: str = "", attachment_ids: tuple[int, ...] = (), *, check_conversation: bool = False
    ) -> None:
        """``ChatMixin.start_turn``, unless the thread's graph waits for an approval (the
        consumer checks the conversation before, for a consumer with a graph)."""
        await self.check_no_pending_approval()
        await super().start_turn(text, idempotency_key, attachment_ids, check_conversation=check_conversation)

    async def start_edit(self, message_id: int, text: str, idempotency_key: str = "") -> None:
        await self.check_no_pending_approval()
        await super().start_edit(message_id, text, idempotency_key)

    async def start_regenerate(self, message_id: int) -> None:
        await self.check_no_pending_approval()
        await super().start_regenerate(message_id)

    async def start_approval(self, interrupt_id: str, decisions: list[dict[str, Any]]) -> None:
        """Resume the thread's graph with ``decisions`` (an ``approval`` frame); see ``run_approval``."""
        if self.is_turn_running():
            raise FrameError("turn_in_progress", gettext("Please wait until the current reply is finished."))
        if self.get_graph() is None:
            raise _not_pending(interrupt_id)
        await self._launch_turn(self.run_approval(interrupt_id, decisions))

    async def run_approval(self, interrupt_id: str, decisions: list[dict[str, Any]]) -> None:
        """Resume the paused turn: check that ``interrupt_id`` is the thread's pending interrupt
        and that ``decisions`` answer it (else ``approval_not_pending`` or ``invalid_frame``, and
        nothing runs), take the thread's lock, count the model call it leads to
        (``pyhub_ai.usage.admit_model_call``), check again (another tab may have answered while
        this one waited), then run the rest of the turn (``run_locked_turn``): the graph gets
        ``Command(resume={"decisions": decisions})`` and streams with the usual frames."""
        history, visitor = self.history, self.get_usage_visitor()

        async def check() -> None:
            approval = await self.aget_pending_approval()
            if approval is None or approval.interrupt_id != interrupt_id:
                raise _not_pending(interrupt_id)
            approval.check(decisions)

        def start(lease: Any) -> Turn:  # runs in the transaction that takes the lock
            admit_model_call(visitor)
            turn = history.resume_turn(lease=lease)
            if turn is None:
                raise _not_pending(interrupt_id)
            return turn

        try:
            await check()
            async with budgets.spending_lock(visitor):
                async with thread_lock(history.thread_key, wait=conf.TURN_LOCK_WAIT, on_acquire=start) as lease:
                    await check()
                    turn = lease.value
                    self._resume = {"decisions": decisions}
                    await self.run_locked_turn(history, turn, turn.human.message, visible=False)
        except ThreadBusy:
            await self.fail_reply("conversation_busy", gettext("This conversation is busy with another reply. Please try again."))
        except UsageLimited as refusal:
            await self.fail_reply(refusal.code, refusal.client_message)
        except FrameError as refusal:
            await self.fail_reply(refusal.code, refusal.message, detail=refusal.detail)
        except DatabaseError as exc:
            logger.exception("Could not resume the graph of %s.", self.scope.get("path", "?"))
            if self._reply_open:
                await self.fail_reply("storage_error", gettext("Your message could not be saved. Please try again."), detail=str(exc))
        except Exception:
            logger.exception("Resuming a graph failed.")
            if self._reply_open:
                await self.fail_reply("server_error", gettext("Something went wrong. Please try again."))
        finally:
            self._reply_open = False
            self._resume = None

    async def end_stored_turn(self, turn: Turn, human_message: BaseMessage) -> None:
        """A turn whose graph paused for an approval ends with ``approval_request`` (to every tab
        of the thread) instead of ``stream_end``; ``on_conversation_complete()`` waits for the
        turn's end."""
        approval, self._approval = self._approval, None
        if approval is None:
            await super().end_stored_turn(turn, human_message)
            return
        await self.end_reply(
            "approval_request", turn_id=str(turn.turn_id), message_id=turn.ai.pk, message=self.reply_object(turn), **approval.frame_data()
        )

    async def produce_reply(self, history: DjangoChatMessageHistory, turn: Turn, prompt: list[BaseMessage]) -> AIMessageChunk | AIMessage | None:
        graph = self.get_run_graph()
        if graph is None:
            return await super().produce_reply(history, turn, prompt)
        saver = self.get_checkpointer()
        config = self.get_graph_config(history)
        thread_id = config["configurable"]["thread_id"]
        resume, self._resume, self._approval = self._resume, None, None
        paused = turn.ai.message if resume is not None else None
        admitted = resume is not None  # the model step after a resumed tool step was counted by run_approval
        if resume is None:
            human = turn.human.message
            known: list[tuple[BaseMessage, int]] = [(human, turn.human.pk)]
            state = await graph.aget_state(config)
            if not state.values.get("messages"):
                earlier = await saver.athread_messages(thread_id, before=turn.human.pk)
                if earlier:
                    await graph.aupdate_state(config, {"messages": earlier})
            await saver.aremember_rows(thread_id, known)
            graph_input: Any = {"messages": [human]}
            self.begin_model_call(turn, prompt)  # each model step is a row of the usage ledger
        else:
            from langgraph.types import Command

            known, graph_input = [], Command(resume=resume)
            turn.call = None  # the paused step's model call is in the ledger already
        base = paused if isinstance(paused, AIMessage) and paused.tool_calls else None
        self._reply_stream = streamed = _StreamedText(base)
        reply: AIMessage | None = None
        step: AIMessage | None = None
        interrupts: Any = None
        visitor = self.get_usage_visitor()
        turn_id = str(turn.turn_id)
        loop = asyncio.get_running_loop()
        relay = TextRelay(self, history, turn, streamed.texts)
        async with asyncio.timeout(conf.AGENT_TIMEOUT):
            events = graph.astream(graph_input, config, stream_mode=["messages", "updates"], durability="exit")
            async for mode, event in events:
                if mode == "messages":
                    chunk = event[0]
                    if isinstance(chunk, AIMessageChunk) and isinstance(chunk.content, str) and chunk.content:
                        await relay.add(chunk.content, loop.time())
                    continue
                await relay.flush()  # the step's text reaches the page before its tool_call or the end
                if "__interrupt__" in event:
                    interrupts = event["__interrupt__"]
                for message in _messages_of(event):
                    if isinstance(message, AIMessage) and message.tool_calls:
                        step = message
                        known.append((message, turn.ai.pk))
                        await self.send_turn_frame("tool_call", turn_id=turn_id, message_id=turn.ai.pk, tool_calls=[
                            {"id": call["id"], "name": call["name"], "args": call["args"]} for call in message.tool_calls
                        ])  # fmt: skip
                    elif isinstance(message, AIMessage):
                        reply = message
                        known.append((message, turn.ai.pk))
                tool_messages = [message for message in _messages_of(event) if isinstance(message, ToolMessage)]
                if tool_messages and step is not None:
                    rows = await history.aadd_tool_step(turn, step, tool_messages)
                    known += [(message, row.pk) for message, row in zip(tool_messages, rows)]
                    for row in rows:
                        await self.send_turn_frame("tool_result", turn_id=turn_id, message=message_object(row))
                    step, streamed.texts, streamed.base = None, [], None
                    relay = TextRelay(self, history, turn, streamed.texts)
                    await self.send_turn_frame("stream_start", turn_id=turn_id, message_id=turn.ai.pk)
                    if not admitted:
                        await sync_to_async(admit_model_call)(visitor)  # the graph's next model step
                    admitted = False
                    self.begin_model_call(turn, prompt)
                await saver.aremember_rows(thread_id, known)  # before the graph saves its checkpoint
        await relay.flush()
        if interrupts:
            self._approval = pending_approval(interrupts, [step] if step is not None else [])
            if self._approval is not None and step is not None:
                return step  # stored as the turn's reply until the approval resumes it
        return reply if reply is not None else streamed.reply()


def _not_pending(interrupt_id: str) -> FrameError:
    return FrameError(
        "approval_not_pending", gettext("This approval is no longer pending."), f"interrupt {interrupt_id!r:.80} is not pending in this thread"
    )


class _ThreadUser:
    """The user of a history's thread, as ``conversation_thread_id`` takes it."""

    is_authenticated = True

    def __init__(self, pk: Any) -> None:
        self.pk = pk


def _messages_of(update: dict[str, Any]) -> list[BaseMessage]:
    """The messages an ``updates`` event of the graph carries, node by node."""
    messages = []
    for value in update.values():
        if isinstance(value, dict) and isinstance(value.get("messages"), list):
            messages += [message for message in value["messages"] if isinstance(message, BaseMessage)]
    return messages
