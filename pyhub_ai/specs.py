"""Names of the chat models pyhub_ai knows by heart.

``LLMModel`` values are ``"provider:model"`` strings, so a consumer may set ``llm_model`` to an
``LLMModel`` member or to any such string (``"openai:gpt-4.1"``, ``"anthropic:claude-..."``).
"""
from __future__ import annotations

from enum import Enum


class LLMModel(str, Enum):
    """Chat models, as ``"provider:model"``."""

    OPENAI_GPT_4O = "openai:gpt-4o"
    OPENAI_GPT_4O_MINI = "openai:gpt-4o-mini"
    OPENAI_GPT_4_1 = "openai:gpt-4.1"
    OPENAI_GPT_4_1_MINI = "openai:gpt-4.1-mini"
    OPENAI_GPT_4_1_NANO = "openai:gpt-4.1-nano"
    OPENAI_GPT_5 = "openai:gpt-5"
    OPENAI_GPT_5_MINI = "openai:gpt-5-mini"
    OPENAI_GPT_5_NANO = "openai:gpt-5-nano"
    OPENAI_O3 = "openai:o3"
    OPENAI_O4_MINI = "openai:o4-mini"
    #: The offline demo model that answers when no credentials are configured.
    OFFLINE = "offline:demo"

    def __str__(self) -> str:
        return self.value

    @property
    def provider(self) -> str:
        return self.value.split(":", 1)[0]

    @property
    def model_name(self) -> str:
        return self.value.split(":", 1)[1]
