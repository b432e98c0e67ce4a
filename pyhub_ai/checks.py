"""System checks for pyhub_ai's settings. Each message names the fix."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .conf import NUMERIC_SETTINGS
from .llm import has_llm_credentials


@register(Tags.compatibility)
def check_numeric_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """pyhub_ai.E001: a numeric PYHUB_AI_* setting has the wrong type or is too small."""
    errors = []
    for name, expected, minimum in NUMERIC_SETTINGS:
        if not hasattr(settings, name):
            continue
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, expected) or value < minimum:
            kind = "an integer" if expected is int else "a number"
            errors.append(
                Error(
                    f"{name} must be {kind} of at least {minimum}, not {value!r}.",
                    hint=f"Set {name} to {kind} >= {minimum}, or remove it to use the default.",
                    id="pyhub_ai.E001",
                )
            )
    return errors


@register(Tags.compatibility)
def check_asgi_application(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """pyhub_ai.E002: the chat consumers need an ASGI server and ``ASGI_APPLICATION``."""
    if getattr(settings, "ASGI_APPLICATION", None):
        return []
    return [
        Error(
            "ASGI_APPLICATION is not set, so no websocket consumer can be served.",
            hint="Set ASGI_APPLICATION = 'yourproject.asgi.application' and route the consumers "
            "in asgi.py (see the pyhub_ai README).",
            id="pyhub_ai.E002",
        )
    ]


@register(Tags.compatibility)
def check_llm_credentials(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """pyhub_ai.W001: no LLM credentials, so the offline demo model will answer."""
    if has_llm_credentials():
        return []
    return [
        Warning(
            "No OPENAI_API_KEY or OPENAI_BASE_URL is configured: the offline demo model answers every chat.",
            hint="Set the OPENAI_API_KEY environment variable (or setting), or OPENAI_BASE_URL for an "
            "OpenAI-compatible server, or set llm_openai_api_key on your consumer.",
            id="pyhub_ai.W001",
        )
    ]
