"""Turn a consumer's configuration into a LangChain chat model.

``get_chat_model()`` accepts an ``LLMModel`` member or any ``"provider:model"`` string (a bare
model name means OpenAI). OpenAI credentials come from the caller (the consumer's attributes),
then the ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` settings, then the environment. With none of
them the :class:`OfflineChatModel` answers, so the demo runs on a machine with no key.

Built models are cached: one client per configuration, reused across turns and connections.

``reply_stream()`` is how a turn streams a model's reply (``ChatMixin.stream_reply``): the
lighter path of ``openai_stream.py`` for a plain ``ChatOpenAI`` with no callbacks, else
LangChain's ``astream``. This module and ``openai_stream.py`` are the only ones that call a model.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage, message_chunk_to_message
from langchain_core.messages.ai import add_ai_message_chunks
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from .conf import conf
from .openai_stream import OpenAIReplyStream, openai_reply_stream
from .specs import LLMModel

logger = logging.getLogger(__name__)

#: provider -> (module, class, pip extra) for providers that need an optional package.
OPTIONAL_PROVIDERS = {
    "anthropic": ("langchain_anthropic", "ChatAnthropic", "anthropic"),
    "ollama": ("langchain_ollama", "ChatOllama", "ollama"),
}

#: ``additional_kwargs`` flag of the hidden message that starts a conversation
#: (``llm_first_user_message_template``); the offline model never quotes it back.
STARTER_FLAG = "pyhub_ai_starter"
#: Where a user's message lists its attachments (``pyhub_ai.attachments.KWARG``; llm.py imports no model).
ATTACHMENTS_KWARG = "pyhub_ai_attachments"

#: Used as the API key for an OpenAI-compatible server configured with a base URL but no key.
NO_KEY_PLACEHOLDER = "not-needed"


def redact_secrets(text: str, *secrets: str) -> str:
    """``text`` with the configured OpenAI key (and ``secrets``) replaced by ``[redacted]``."""
    for secret in {conf.OPENAI_API_KEY, *secrets}:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return text


def parse_model(model: LLMModel | str) -> tuple[str, str]:
    """Split ``"provider:model"`` (or an ``LLMModel``) into its parts; a bare name is OpenAI's."""
    value = str(model.value if isinstance(model, LLMModel) else model).strip()
    if not value:
        raise ImproperlyConfigured("llm_model is empty. Set it to an LLMModel member or 'provider:model'.")
    provider, sep, name = value.partition(":")
    if not sep:
        return "openai", value
    return provider.lower(), name


def has_llm_credentials(api_key: str = "", base_url: str = "") -> bool:
    """Whether an OpenAI key or endpoint is configured anywhere (argument, setting, environment)."""
    return bool(api_key or base_url or conf.OPENAI_API_KEY or conf.OPENAI_BASE_URL)


def get_chat_model(
    model: LLMModel | str,
    *,
    temperature: float | None = None,
    api_key: str = "",
    base_url: str = "",
) -> BaseChatModel:
    """Return the (cached) chat model for this configuration.

    Called by ``LLMMixin.get_llm()`` once per turn; the cache makes that cheap.
    """
    provider, name = parse_model(model)
    if provider == "offline":
        return _offline_model(conf.OFFLINE_MODEL_DELAY)
    if provider == "openai":
        api_key = api_key or conf.OPENAI_API_KEY
        base_url = base_url or conf.OPENAI_BASE_URL
        if not (api_key or base_url):
            _warn_offline_once()
            return _offline_model(conf.OFFLINE_MODEL_DELAY)
        return _openai_model(name, temperature, api_key or NO_KEY_PLACEHOLDER, base_url or None)
    return _optional_provider_model(provider, name, temperature)


@lru_cache(maxsize=1)
def _warn_offline_once() -> None:
    """Log, once per process (not once per turn), that the offline model stands in for OpenAI."""
    logger.warning("No OPENAI_API_KEY or OPENAI_BASE_URL is configured: the offline demo model answers.")


class ReplyStream:
    """The standard path: ``llm.astream(prompt)``, with every callback and tracer it runs.

    ``texts()`` yields the text of each chunk as it arrives; ``reply()`` is the reply streamed
    so far, merged in one go (merging chunk by chunk costs a message object per token).
    """

    #: The model enforces its own wait for each chunk (``ChatOpenAI.stream_chunk_timeout``).
    chunk_timeout: float | None = None

    def __init__(self, llm: Any, prompt: list[BaseMessage]) -> None:
        self.llm = llm
        self.prompt = prompt
        self._chunks: list[AIMessageChunk] = []

    async def texts(self) -> AsyncIterator[str]:
        chunks = self._chunks
        async for chunk in self.llm.astream(self.prompt):
            chunks.append(chunk)
            yield chunk.text

    def reply(self) -> AIMessageChunk | None:
        chunks = self._chunks
        return add_ai_message_chunks(chunks[0], *chunks[1:]) if chunks else None


def reply_stream(llm: Any, prompt: list[BaseMessage]) -> ReplyStream | OpenAIReplyStream:
    """How ``llm`` will stream its reply to ``prompt``; called by ``ChatMixin.stream_reply``
    for every model call (each step of the tool loop too).

    With ``PYHUB_AI_LLM_FAST_STREAM`` on (the default), a plain ``ChatOpenAI`` (as
    ``get_chat_model()`` builds it, or the consumer's own, possibly bound to tools) with no
    callbacks or tracing streams through ``openai_stream.OpenAIReplyStream``: the same request,
    the same stored message, a fraction of the CPU. Anything else streams through ``astream``.
    """
    if conf.LLM_FAST_STREAM:
        stream = openai_reply_stream(llm, prompt)
        if stream is not None:
            return stream
    return ReplyStream(llm, prompt)


@lru_cache(maxsize=64)
def _openai_model(name: str, temperature: float | None, api_key: str, base_url: str | None) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    kwargs: dict[str, Any] = {"model": name, "api_key": api_key, "stream_usage": True}
    if base_url:
        kwargs["base_url"] = base_url
    if temperature is not None:
        kwargs["temperature"] = temperature
    return ChatOpenAI(**kwargs)


@lru_cache(maxsize=64)
def _optional_provider_model(provider: str, name: str, temperature: float | None) -> BaseChatModel:
    if provider not in OPTIONAL_PROVIDERS:
        known = ", ".join(sorted({"openai", "offline", *OPTIONAL_PROVIDERS}))
        raise ImproperlyConfigured(f"Unknown LLM provider {provider!r} in llm_model. Known providers: {known}.")
    module_name, class_name, extra = OPTIONAL_PROVIDERS[provider]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"llm_model uses the {provider!r} provider, which needs an extra package: "
            f'pip install "pyhub_ai[{extra}]"'
        ) from exc
    kwargs: dict[str, Any] = {"model": name}
    if temperature is not None:
        kwargs["temperature"] = temperature
    return getattr(module, class_name)(**kwargs)


@lru_cache(maxsize=8)
def _offline_model(delay: float) -> BaseChatModel:
    return OfflineChatModel(delay=delay)


#: Words that make the offline model call a tool whose name contains the key.
OFFLINE_TOOL_KEYWORDS = {
    "describe": ("describe", "summary", "summarise", "summarize", "overview", "columns", "요약", "설명", "컬럼"),
    "chart": ("chart", "plot", "graph", "visuali", "차트", "그래프", "시각화"),
    "count": ("count", "how many", "개수", "몇 개"),
}


class OfflineChatModel(BaseChatModel):
    """A deterministic stand-in model that needs no network and says what it is.

    It streams a short reply word by word (``delay`` seconds apart), quotes the user's last
    message, and reports approximate token usage like a real model. Bound to tools, it calls
    one that needs no arguments when the user's message names it ("sales_table" or "sales
    table") or says a keyword of ``OFFLINE_TOOL_KEYWORDS`` that its name contains, then
    reports the tool's answer.
    """

    delay: float = 0.0
    tool_names: tuple[str, ...] = ()
    xy_tool_names: tuple[str, ...] = ()

    def bind_tools(self, tools: Any, **kwargs: Any) -> OfflineChatModel:
        """A copy that may call those of ``tools`` that need no arguments (and fills the
        optional ``x`` and ``y`` of a tool that has both, see ``tool_call_for``)."""
        callable_without_arguments = tuple(
            tool.name for tool in tools if not (getattr(tool, "tool_call_schema", None) and _required_fields(tool))
        )
        xy = tuple(tool.name for tool in tools if {"x", "y"} <= set(_fields(tool)))
        return self.model_copy(update={"tool_names": callable_without_arguments, "xy_tool_names": xy})

    def tool_call_for(self, messages: list[BaseMessage]) -> dict[str, Any] | None:
        """The tool call the offline model makes for ``messages`` (``None``: it just answers)."""
        if not self.tool_names or not messages or not isinstance(messages[-1], HumanMessage):
            return None
        text = messages[-1].text.lower()
        for name in self.tool_names:
            keywords = [keyword for key, found in OFFLINE_TOOL_KEYWORDS.items() if key in name for keyword in found]
            if any(word in text for word in [name.lower(), name.lower().replace("_", " "), *keywords]):
                args = _xy_arguments(text, messages) if name in self.xy_tool_names else {}
                return {"name": name, "args": json.dumps(args), "id": f"offline_{name}", "index": 0}
        return None

    @property
    def _llm_type(self) -> str:
        return "pyhub-ai-offline"

    def reply_for(self, messages: list[BaseMessage]) -> str:
        """The full reply to ``messages`` (the same input always gives the same reply)."""
        if messages and isinstance(messages[-1], ToolMessage):
            result = messages[-1].text.strip()
            result = result if len(result) <= 600 else result[:600] + "…"
            return gettext("The tool “%(name)s” answered:") % {"name": messages[-1].name} + f"\n\n```\n{result}\n```"
        last_human = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        is_starter = last_human is not None and last_human.additional_kwargs.get(STARTER_FLAG)
        said = _first_text(last_human).strip() if last_human is not None and not is_starter else ""
        intro = gettext(
            "I am the offline demo model of pyhub_ai, not a real AI. To talk to a real model, "
            "set OPENAI_API_KEY (or OPENAI_BASE_URL for an OpenAI-compatible server) and restart."
        )
        files = [str(item.get("name", "")) for item in (last_human.additional_kwargs.get(ATTACHMENTS_KWARG) or [] if last_human else [])]
        received = gettext("I received your files: %(names)s.") % {"names": ", ".join(files)} + "\n\n" if files else ""
        if not said:
            return received + intro
        quoted = said if len(said) <= 200 else said[:200] + "…"
        return gettext("You said: “%(text)s”.") % {"text": quoted} + "\n\n" + received + intro

    def _pieces(self, messages: list[BaseMessage]) -> list[str]:
        text = self.reply_for(messages)
        words = text.split(" ")
        return [word if i == len(words) - 1 else word + " " for i, word in enumerate(words)]

    def _usage(self, messages: list[BaseMessage], pieces: list[str]) -> dict[str, int]:
        input_tokens = sum(len(m.text.split()) for m in messages)
        output_tokens = len(pieces)
        return {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        chunks = list(self._stream(messages))
        message = chunks[0].message
        for chunk in chunks[1:]:
            message = message + chunk.message
        return ChatResult(generations=[ChatGeneration(message=message_chunk_to_message(message))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        call = self.tool_call_for(messages)
        if call is not None:
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[call], usage_metadata=self._usage(messages, [])))
            return
        pieces = self._pieces(messages)
        for piece in pieces:
            if self.delay:
                time.sleep(self.delay)
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=self._usage(messages, pieces)))

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self.tool_call_for(messages)
        if call is not None:
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[call], usage_metadata=self._usage(messages, [])))
            return
        pieces = self._pieces(messages)
        for piece in pieces:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=self._usage(messages, pieces)))


def _first_text(message: BaseMessage) -> str:
    """A message's own text: its string content, or its first text block (attached text
    files follow it as blocks of their own, see ``pyhub_ai.attachments.for_model``)."""
    if isinstance(message.content, str):
        return message.content
    return next((str(b.get("text", "")) for b in message.content if isinstance(b, dict) and b.get("type") == "text"), "")


def _xy_arguments(text: str, messages: list[BaseMessage]) -> dict[str, str]:
    """``{"y": "units", "x": "product"}`` for "chart units by product" when the system prompt
    lists both as columns ("units (int64)"); else nothing (the tool's defaults)."""
    match = re.search(r"(\w+) (?:by|per) (\w+)", text)
    system = next((m.text for m in messages if isinstance(m, SystemMessage)), "")
    if match and all(f"{word} (" in system for word in match.groups()):
        return {"y": match.group(1), "x": match.group(2)}
    return {}


def _fields(tool: Any) -> list[str]:
    schema = getattr(tool, "tool_call_schema", None)
    if schema is None:
        return []
    if isinstance(schema, dict):
        return list(schema.get("properties", {}))
    return list(schema.model_fields)


def _required_fields(tool: Any) -> list[str]:
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        return list(schema.get("required", []))
    return [name for name, field in schema.model_fields.items() if field.is_required()]
