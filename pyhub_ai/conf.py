"""The app's settings, read from ``django.conf.settings`` at access time.

Reading at access time (not import time) keeps ``override_settings`` working in tests. Each
setting has a default here, a system check in ``checks.py`` and a line in the README.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from django.conf import settings


class Settings:
    """Typed accessors for every setting pyhub_ai reads. Use the module-level ``conf``."""

    @property
    def OPENAI_API_KEY(self) -> str:
        """The OpenAI key: the ``OPENAI_API_KEY`` setting, else the environment variable."""
        return getattr(settings, "OPENAI_API_KEY", "") or os.environ.get("OPENAI_API_KEY", "")

    @property
    def OPENAI_BASE_URL(self) -> str:
        """An OpenAI-compatible endpoint: the ``OPENAI_BASE_URL`` setting, else the environment."""
        return getattr(settings, "OPENAI_BASE_URL", "") or os.environ.get("OPENAI_BASE_URL", "")

    @property
    def HISTORY_MAX_MESSAGES(self) -> int:
        """How many stored messages (at most) go into the prompt of one turn."""
        return getattr(settings, "PYHUB_AI_HISTORY_MAX_MESSAGES", 50)

    @property
    def HISTORY_MAX_TOKENS(self) -> int | None:
        """A token budget for the history in a prompt (``None``: only the message count limits it)."""
        return getattr(settings, "PYHUB_AI_HISTORY_MAX_TOKENS", None)

    @property
    def HISTORY_INCLUDE_FAILED(self) -> bool:
        """Whether failed and interrupted replies go into later prompts."""
        return getattr(settings, "PYHUB_AI_HISTORY_INCLUDE_FAILED", False)

    @property
    def TOKEN_COUNTER(self) -> str:
        """Dotted path of the ``callable(message) -> int`` that estimates a message's tokens."""
        return getattr(settings, "PYHUB_AI_TOKEN_COUNTER", "pyhub_ai.tokens.approximate_token_count")

    @property
    def CONVERSATION_TTL(self) -> timedelta | None:
        """Sliding expiry of conversations (a ``timedelta`` or seconds); ``None``: never expire."""
        value = getattr(settings, "PYHUB_AI_CONVERSATION_TTL", None)
        return timedelta(seconds=value) if isinstance(value, (int, float)) else value

    @property
    def HISTORY_PAGE_SIZE(self) -> int:
        """How many messages one ``history`` frame carries to the page."""
        return getattr(settings, "PYHUB_AI_HISTORY_PAGE_SIZE", 50)

    @property
    def MAX_MESSAGE_LENGTH(self) -> int:
        """The longest user message accepted, in characters."""
        return getattr(settings, "PYHUB_AI_MAX_MESSAGE_LENGTH", 32_000)

    @property
    def TURN_LOCK_WAIT(self) -> float:
        """Seconds a turn waits for another turn of the same thread (another tab) to finish."""
        return getattr(settings, "PYHUB_AI_TURN_LOCK_WAIT", 120)

    @property
    def TURN_LOCK_LEASE(self) -> float:
        """Seconds a turn's lock outlives a worker that died mid-turn (renewed while it runs)."""
        return getattr(settings, "PYHUB_AI_TURN_LOCK_LEASE", 15)

    @property
    def STREAM_SAVE_INTERVAL(self) -> float:
        """Seconds between saves of a reply while it streams (what a crash can lose at most)."""
        return getattr(settings, "PYHUB_AI_STREAM_SAVE_INTERVAL", 2.0)

    @property
    def STREAM_DELTA_INTERVAL(self) -> float:
        """Seconds between two ``stream_delta`` frames of a reply (0: one frame per token)."""
        return getattr(settings, "PYHUB_AI_STREAM_DELTA_INTERVAL", 0.05)

    @property
    def LLM_TIMEOUT(self) -> float:
        """Seconds to wait for the model's next token before the turn fails."""
        return getattr(settings, "PYHUB_AI_LLM_TIMEOUT", 60)

    @property
    def LLM_FAST_STREAM(self) -> bool:
        """Stream plain ``ChatOpenAI`` models without callbacks through the lighter path of
        ``pyhub_ai.openai_stream`` (same requests and stored messages); ``False``: always
        LangChain's ``astream``."""
        return getattr(settings, "PYHUB_AI_LLM_FAST_STREAM", True)

    @property
    def RATE_LIMIT(self) -> str | None:
        """Model calls (turns, conversation starters, agent steps) allowed per visitor, like
        ``"30/m"`` (s, m, h, d); ``None`` turns the limit off (see ``pyhub_ai.usage``)."""
        return getattr(settings, "PYHUB_AI_RATE_LIMIT", "30/m")

    @property
    def GLOBAL_RATE_LIMIT(self) -> str | None:
        """Model calls allowed for the whole site, every visitor together, like ``"600/m"``;
        ``None`` turns the ceiling off."""
        return getattr(settings, "PYHUB_AI_GLOBAL_RATE_LIMIT", "600/m")

    @property
    def RATE_LIMIT_CACHE(self) -> str:
        """The cache (a key of ``CACHES``) that counts model calls; share it between workers."""
        return getattr(settings, "PYHUB_AI_RATE_LIMIT_CACHE", "default")

    @property
    def MODEL_PRICES(self) -> dict[str, dict[str, float]]:
        """Prices per million tokens by ``"provider:model"``: ``{"input": ..., "output": ...,
        "cached_input": ...}`` (``cached_input`` defaults to ``input``); a model not listed
        costs 0 and its ledger rows say so (see ``pyhub_ai.ledger``)."""
        return getattr(settings, "PYHUB_AI_MODEL_PRICES", None) or {}

    @property
    def BUDGETS(self) -> dict[str, Any]:
        """Spending limits per user, group, anonymous visitor and for the site, per day and
        month, in tokens or cost (see ``pyhub_ai.budgets``); empty: no budget."""
        return getattr(settings, "PYHUB_AI_BUDGETS", None) or {}

    @property
    def FRAME_FLOOD_LIMIT(self) -> int:
        """Frames a connection may send in 10 seconds before it is closed with 4429."""
        return getattr(settings, "PYHUB_AI_FRAME_FLOOD_LIMIT", 200)

    @property
    def AGENT_MAX_STEPS(self) -> int:
        """Model steps (answers that may call tools) allowed in one turn."""
        return getattr(settings, "PYHUB_AI_AGENT_MAX_STEPS", 8)

    @property
    def AGENT_TIMEOUT(self) -> float:
        """Seconds one turn of the tool-calling loop may take in all."""
        return getattr(settings, "PYHUB_AI_AGENT_TIMEOUT", 300)

    @property
    def TOOL_TIMEOUT(self) -> float:
        """Seconds one tool call may take before it becomes an error result."""
        return getattr(settings, "PYHUB_AI_TOOL_TIMEOUT", 30)

    @property
    def CHAT_CONSUMER(self) -> str:
        """Dotted path of the consumer that ``pyhub_ai.routing`` serves (the ready-made chat)."""
        return getattr(settings, "PYHUB_AI_CHAT_CONSUMER", "pyhub_ai.consumers.ChatConsumer")

    @property
    def LLM_MODEL(self) -> str:
        """The model of the ready-made ``ChatConsumer``: an ``LLMModel`` value or ``"provider:model"``."""
        return getattr(settings, "PYHUB_AI_LLM_MODEL", "openai:gpt-4o-mini")

    @property
    def LLM_SYSTEM_PROMPT(self) -> str:
        """The system prompt of the ready-made ``ChatConsumer``."""
        return getattr(settings, "PYHUB_AI_LLM_SYSTEM_PROMPT", "You are a helpful assistant.")

    @property
    def ATTACHMENT_MAX_BYTES(self) -> int:
        """The largest file a user may attach to a message, in bytes (``pyhub_ai.attachments``)."""
        return getattr(settings, "PYHUB_AI_ATTACHMENT_MAX_BYTES", 5 * 2**20)

    @property
    def OFFLINE_MODEL_DELAY(self) -> float:
        """Seconds the offline demo model waits between streamed words (0 in tests)."""
        return getattr(settings, "PYHUB_AI_OFFLINE_MODEL_DELAY", 0.03)


conf = Settings()

#: (setting name, expected type, minimum) for the checks of numeric settings.
NUMERIC_SETTINGS: tuple[tuple[str, type | tuple[type, ...], float], ...] = (
    ("PYHUB_AI_HISTORY_MAX_MESSAGES", int, 1),
    ("PYHUB_AI_HISTORY_PAGE_SIZE", int, 1),
    ("PYHUB_AI_MAX_MESSAGE_LENGTH", int, 1),
    ("PYHUB_AI_OFFLINE_MODEL_DELAY", (int, float), 0),
    ("PYHUB_AI_TURN_LOCK_WAIT", (int, float), 0),
    ("PYHUB_AI_STREAM_SAVE_INTERVAL", (int, float), 0.1),
    ("PYHUB_AI_STREAM_DELTA_INTERVAL", (int, float), 0),
    ("PYHUB_AI_TURN_LOCK_LEASE", (int, float), 1),
    ("PYHUB_AI_FRAME_FLOOD_LIMIT", int, 1),
    ("PYHUB_AI_AGENT_MAX_STEPS", int, 1),
    ("PYHUB_AI_AGENT_TIMEOUT", (int, float), 1),
    ("PYHUB_AI_TOOL_TIMEOUT", (int, float), 0.1),
    ("PYHUB_AI_LLM_TIMEOUT", (int, float), 1),
    ("PYHUB_AI_ATTACHMENT_MAX_BYTES", int, 1),
)

#: Numeric settings that may also be ``None`` (their default).
OPTIONAL_NUMERIC_SETTINGS: tuple[tuple[str, type | tuple[type, ...], float], ...] = (
    ("PYHUB_AI_HISTORY_MAX_TOKENS", int, 1),
)
