"""Which model answers, and the prompt it is given."""
from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, SystemMessage

from ..llm import get_chat_model, redact_secrets
from ..specs import LLMModel

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}\s][^{}]*)\}")


def fill_template(template: str, context: dict[str, Any]) -> str:
    """Fill ``{name}`` placeholders (any name, Korean ones included) from ``context``.

    ``{{`` and ``}}`` are literal braces. A placeholder missing from the context is left as it
    is, so a JSON example inside a prompt never breaks a turn.
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        return str(context[name]) if name in context else token

    return _PLACEHOLDER.sub(replace, template)


class LLMMixin:
    """The model and its prompt. Every attribute has a ``get_*`` hook beside it.

    ``get_llm()`` is called once per turn by ``ChatMixin``; it returns a cached model, so
    overriding a ``get_*`` hook per user or per room costs nothing extra.
    """

    llm_model: LLMModel | str | None = None
    llm_temperature: float | None = None
    llm_system_prompt_template: str = ""
    llm_first_user_message_template: str = ""
    llm_openai_api_key: str = ""
    llm_openai_base_url: str = ""

    def get_llm_model(self) -> LLMModel | str:
        if self.llm_model is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__} requires either a definition of 'llm_model' "
                "or an implementation of 'get_llm_model()'."
            )
        return self.llm_model

    def get_llm_temperature(self) -> float | None:
        return self.llm_temperature

    def get_llm_openai_api_key(self) -> str:
        """Overrides the ``OPENAI_API_KEY`` setting and environment variable for this consumer."""
        return self.llm_openai_api_key

    def get_llm_openai_base_url(self) -> str:
        """Overrides the ``OPENAI_BASE_URL`` setting and environment variable for this consumer."""
        return self.llm_openai_base_url

    def get_llm(self) -> BaseChatModel:
        """The chat model for the next turn, built from the hooks above."""
        return get_chat_model(
            self.get_llm_model(),
            temperature=self.get_llm_temperature(),
            api_key=self.get_llm_openai_api_key(),
            base_url=self.get_llm_openai_base_url(),
        )

    def redact(self, text: str) -> str:
        """``text`` with every configured API key replaced, for logs: a provider's error may
        quote the request's credentials."""
        return redact_secrets(text, self.get_llm_openai_api_key())

    def get_llm_prompt_context_data(self) -> dict[str, Any]:
        """Values for the ``{placeholders}`` of the system prompt and first user message."""
        return {}

    def get_llm_system_prompt_template(self) -> str:
        return self.llm_system_prompt_template

    def get_llm_first_user_message_template(self) -> str:
        return self.llm_first_user_message_template

    def get_llm_system_prompt(self) -> str:
        """The filled system prompt (empty: no system message is sent)."""
        return fill_template(self.get_llm_system_prompt_template(), self.get_llm_prompt_context_data()).strip()

    def get_llm_first_user_message(self) -> str:
        """The filled message that starts an empty conversation (empty: wait for the user)."""
        return fill_template(self.get_llm_first_user_message_template(), self.get_llm_prompt_context_data()).strip()

    def get_llm_prompt_messages(self, previous_messages: list[BaseMessage], new_message: BaseMessage) -> list[BaseMessage]:
        """What the model is sent: system prompt, the history window, the new message."""
        system_prompt = self.get_llm_system_prompt()
        prefix: list[BaseMessage] = [SystemMessage(content=system_prompt)] if system_prompt else []
        return [*prefix, *previous_messages, new_message]
