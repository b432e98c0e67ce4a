"""Tool calling: the model may call the consumer's tools, step by step, within limits."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.utils.translation import gettext
from langchain_core.messages import AIMessageChunk, BaseMessage, ToolMessage, message_chunk_to_message
from langchain_core.tools import BaseTool, tool as make_tool

from ..artifacts import store_artifact
from ..conf import conf
from ..display import message_object
from ..history import DjangoChatMessageHistory, Turn
from ..usage import admit_model_call

logger = logging.getLogger("pyhub_ai.agent")


class AgentStepLimitReached(Exception):
    """The model still wanted tools after ``PYHUB_AI_AGENT_MAX_STEPS`` steps."""

    @property
    def client_message(self) -> str:
        return gettext("The assistant needed too many steps and stopped. Please try a simpler request.")


def as_tool(candidate: BaseTool | Callable[..., Any]) -> BaseTool:
    """A LangChain tool as it is, or a plain typed function (sync or async, with a docstring)
    turned into one."""
    return candidate if isinstance(candidate, BaseTool) else make_tool(candidate)


class AgentMixin:
    """Runs the tool-calling loop of a turn when the consumer has tools.

    ``produce_reply()`` (called by ``ChatMixin.run_locked_turn``) streams each step of the
    model bound to ``get_tools()``; when a step calls tools, the consumer sends a
    ``tool_call`` frame, runs them (``run_tool_call()``, at most ``PYHUB_AI_TOOL_TIMEOUT``
    seconds each), stores the step with its results (``aadd_tool_step``), sends a
    ``tool_result`` frame per result and lets the model continue — each further step counted by
    ``pyhub_ai.usage.admit_model_call`` before the model is called, at most
    ``PYHUB_AI_AGENT_MAX_STEPS`` steps and ``PYHUB_AI_AGENT_TIMEOUT`` seconds per turn.
    A tool that fails or times out becomes an error ``ToolMessage`` the model can read.
    """

    tools: Sequence[BaseTool | Callable[..., Any]] | None = None
    _tools_output: list[ToolMessage] | None = None

    def get_tools(self) -> list[BaseTool]:
        """The tools the model may call (``tools``, as LangChain tools)."""
        return [as_tool(candidate) for candidate in self.tools or ()]

    async def aget_tools(self) -> list[BaseTool]:
        """The tools of the next turn: ``get_tools()``, and what other mixins add (MCP servers)."""
        return self.get_tools()

    def get_tools_output_list(self) -> list[ToolMessage]:
        """The tool results of the last turn, for ``on_conversation_complete()``."""
        return list(self._tools_output or ())

    async def produce_reply(self, history: DjangoChatMessageHistory, turn: Turn, prompt: list[BaseMessage]) -> AIMessageChunk | None:
        tools = await self.aget_tools()
        self._tools_output = []
        if not tools:
            return await super().produce_reply(history, turn, prompt)
        tools_by_name = {tool.name: tool for tool in tools}
        llm = self.get_llm().bind_tools(tools)
        messages = list(prompt)
        visitor = self.get_usage_visitor()
        async with asyncio.timeout(conf.AGENT_TIMEOUT):
            for step_number in range(conf.AGENT_MAX_STEPS):
                if step_number:  # the first step was counted when the turn started (run_turn)
                    await sync_to_async(admit_model_call)(visitor)
                reply = await self.stream_reply(turn, messages, llm, history)
                step = message_chunk_to_message(reply) if reply is not None else None
                if step is None or not step.tool_calls:
                    return reply
                await self.send_turn_frame("tool_call", turn_id=str(turn.turn_id), message_id=turn.ai.pk, tool_calls=[
                    {"id": call["id"], "name": call["name"], "args": call["args"]} for call in step.tool_calls
                ])
                results = [await self.run_tool_call(tools_by_name, call) for call in step.tool_calls]
                rows = await history.aadd_tool_step(turn, step, results)
                for row in rows:
                    await self.send_turn_frame("tool_result", turn_id=str(turn.turn_id), message=message_object(row))
                self._tools_output += results
                messages += [step, *results]
                await self.send_turn_frame("stream_start", turn_id=str(turn.turn_id), message_id=turn.ai.pk)
        raise AgentStepLimitReached()

    async def run_tool_call(self, tools_by_name: dict[str, BaseTool], call: dict[str, Any]) -> ToolMessage:
        """Run one tool call; failures and timeouts become error ``ToolMessage``s."""
        tool = tools_by_name.get(call["name"])
        if tool is None:
            return _error_result(call, f"Error: there is no tool named {call['name']!r}.")
        try:
            async with asyncio.timeout(conf.TOOL_TIMEOUT):
                result = await tool.ainvoke({**call, "type": "tool_call"})
        except TimeoutError:
            logger.warning("Tool %s timed out after %s s.", call["name"], conf.TOOL_TIMEOUT)
            return _error_result(call, f"Error: the tool did not answer within {conf.TOOL_TIMEOUT} seconds.")
        except Exception as exc:
            logger.exception("Tool %s failed.", call["name"])
            return _error_result(call, self.redact(f"Error: {type(exc).__name__}: {exc}"))
        if not isinstance(result, ToolMessage):
            result = ToolMessage(content=str(result), tool_call_id=call["id"], name=call["name"])
        if result.artifact is not None:
            result.artifact = await sync_to_async(store_artifact)(result.artifact)
        return result


def _error_result(call: dict[str, Any], text: str) -> ToolMessage:
    return ToolMessage(content=text, tool_call_id=call["id"], name=call["name"], status="error")
