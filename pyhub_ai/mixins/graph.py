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
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage

from ..conf import conf
from ..display import message_object
from ..history import DjangoChatMessageHistory, Turn
from ..usage import admit_model_call

if TYPE_CHECKING:
    from ..checkpoint import DjangoSaver

_default_checkpointer: DjangoSaver | None = None


def default_checkpointer() -> DjangoSaver:
    """The process's ``DjangoSaver`` for graph turns: one, so its memory of recent message
    lists serves every connection."""
    global _default_checkpointer
    if _default_checkpointer is None:
        from ..checkpoint import DjangoSaver

        _default_checkpointer = DjangoSaver()
    return _default_checkpointer


class _StreamedText:
    """What the graph's model streamed so far in this step (``ChatMixin._partial_reply``)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def reply(self) -> AIMessageChunk | None:
        return AIMessageChunk(content="".join(self.texts)) if self.texts else None


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
    """

    graph: Any = None
    checkpointer: DjangoSaver | None = None

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

    async def produce_reply(self, history: DjangoChatMessageHistory, turn: Turn, prompt: list[BaseMessage]) -> AIMessageChunk | AIMessage | None:
        graph = self.get_graph()
        if graph is None:
            return await super().produce_reply(history, turn, prompt)
        saver = self.get_checkpointer()
        if graph.checkpointer is not saver:
            graph = graph.copy(update={"checkpointer": saver})
        config = self.get_graph_config(history)
        thread_id = config["configurable"]["thread_id"]
        human = turn.human.message
        known: list[tuple[BaseMessage, int]] = [(human, turn.human.pk)]
        state = await graph.aget_state(config)
        if not state.values.get("messages"):
            earlier = await saver.athread_messages(thread_id, before=turn.human.pk)
            if earlier:
                await graph.aupdate_state(config, {"messages": earlier})
        await saver.aremember_rows(thread_id, known)
        self._reply_stream = streamed = _StreamedText()
        reply: AIMessage | None = None
        step: AIMessage | None = None
        visitor = self.get_usage_visitor()
        turn_id = str(turn.turn_id)
        self.begin_model_call(turn, prompt)  # each model step is a row of the usage ledger
        async with asyncio.timeout(conf.AGENT_TIMEOUT):
            events = graph.astream({"messages": [human]}, config, stream_mode=["messages", "updates"], durability="exit")
            async for mode, event in events:
                if mode == "messages":
                    chunk = event[0]
                    if isinstance(chunk, AIMessageChunk) and isinstance(chunk.content, str) and chunk.content:
                        streamed.texts.append(chunk.content)
                        await self.send_turn_frame("stream_delta", turn_id=turn_id, text=chunk.content)
                    continue
                for message in _messages_of(event):
                    if isinstance(message, AIMessage) and message.tool_calls:
                        step = message
                        await self.send_turn_frame("tool_call", turn_id=turn_id, message_id=turn.ai.pk, tool_calls=[
                            {"id": call["id"], "name": call["name"], "args": call["args"]} for call in message.tool_calls
                        ])  # fmt: skip
                    elif isinstance(message, AIMessage):
                        reply = message
                        known.append((message, turn.ai.pk))
                tool_messages = [message for message in _messages_of(event) if isinstance(message, ToolMessage)]
                if tool_messages and step is not None:
                    step_row = turn.ai
                    rows = await history.aadd_tool_step(turn, step, tool_messages)
                    known += [(step, step_row.pk), *((message, row.pk) for message, row in zip(tool_messages, rows))]
                    for row in rows:
                        await self.send_turn_frame("tool_result", turn_id=turn_id, message=message_object(row))
                    step, streamed.texts = None, []
                    await self.send_turn_frame("stream_start", turn_id=turn_id, message_id=turn.ai.pk)
                    await sync_to_async(admit_model_call)(visitor)  # the graph's next model step
                    self.begin_model_call(turn, prompt)
                await saver.aremember_rows(thread_id, known)  # before the graph saves its checkpoint
        return reply if reply is not None else streamed.reply()


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
