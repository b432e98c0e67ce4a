"""System checks for pyhub_ai's settings. Each message names the fix."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from .conf import NUMERIC_SETTINGS, OPTIONAL_NUMERIC_SETTINGS, conf
from .llm import has_llm_credentials
from .ratelimit import parse_rate


@register(Tags.compatibility)
def check_numeric_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """pyhub_ai.E001: a numeric PYHUB_AI_* setting has the wrong type or is too small."""
    errors = []
    optional = {name for name, _, _ in OPTIONAL_NUMERIC_SETTINGS}
    for name, expected, minimum in NUMERIC_SETTINGS + OPTIONAL_NUMERIC_SETTINGS:
        if not hasattr(settings, name):
            continue
        value = getattr(settings, name)
        if value is None and name in optional:
            continue
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


@register(Tags.compatibility)
def check_conversation_ttl(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """pyhub_ai.E003: PYHUB_AI_CONVERSATION_TTL is not a positive timedelta or number of seconds."""
    value = getattr(settings, "PYHUB_AI_CONVERSATION_TTL", None)
    if value is None:
        return []
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if not isinstance(seconds, bool) and isinstance(seconds, (int, float)) and seconds > 0:
        return []
    return [
        Error(
            f"PYHUB_AI_CONVERSATION_TTL must be a positive timedelta or number of seconds, not {value!r}.",
            hint="For example PYHUB_AI_CONVERSATION_TTL = timedelta(days=30), or None to keep conversations.",
            id="pyhub_ai.E003",
        )
    ]


@register(Tags.compatibility)
def check_token_counter(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """pyhub_ai.E004: PYHUB_AI_TOKEN_COUNTER does not name an importable callable."""
    path = conf.TOKEN_COUNTER
    try:
        counter = import_string(path)
    except ImportError as exc:
        counter, reason = None, str(exc)
    else:
        reason = "it is not callable"
    if callable(counter):
        return []
    return [
        Error(
            f"PYHUB_AI_TOKEN_COUNTER = {path!r} cannot be used: {reason}.",
            hint="Give the dotted path of a callable(message) -> int, or remove the setting to use "
            "pyhub_ai.tokens.approximate_token_count.",
            id="pyhub_ai.E004",
        )
    ]


@register(Tags.compatibility)
def check_rate_limit(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """pyhub_ai.E005: PYHUB_AI_RATE_LIMIT is not a rate like "30/m", or its cache does not exist."""
    errors = []
    if conf.RATE_LIMIT:
        try:
            parse_rate(conf.RATE_LIMIT)
        except (TypeError, ValueError) as exc:
            errors.append(Error(str(exc), hint='Use a rate like "30/m" (units s, m, h, d), or None to turn the limit off.', id="pyhub_ai.E005"))
        if conf.RATE_LIMIT_CACHE not in settings.CACHES:
            errors.append(
                Error(
                    f"PYHUB_AI_RATE_LIMIT_CACHE = {conf.RATE_LIMIT_CACHE!r} is not a key of CACHES.",
                    hint="Name one of your CACHES (a shared one, such as Redis, when several workers serve the chat).",
                    id="pyhub_ai.E005",
                )
            )
    return errors
