"""System checks for pyhub_ai's settings. Each message names the fix."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from .budgets import budget_problems, cost_limits
from .conf import NUMERIC_SETTINGS, OPTIONAL_NUMERIC_SETTINGS, conf
from .ledger import price_problems
from .llm import has_llm_credentials
from .ratelimit import parse_rate

WHITENOISE_MIDDLEWARE = "whitenoise.middleware.WhiteNoiseMiddleware"


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


def unusable_import(path: str, usable: Callable[[Any], bool], what: str) -> str | None:
    """Why the dotted ``path`` of a setting cannot be used (not importable, or not ``what``);
    ``None`` when it can."""
    try:
        value = import_string(path)
    except ImportError as exc:
        return str(exc)
    return None if usable(value) else f"it is not {what}"


def serves_websocket_chat() -> bool:
    """Whether this project serves pyhub_ai's websocket chat, or only uses its models and
    ``DjangoChatMessageHistory`` (a WSGI site, a script, a worker): the checks about ASGI,
    channel layers, static files under daphne and the model's key apply to the first only."""
    return bool(
        getattr(settings, "ASGI_APPLICATION", None)
        or apps.is_installed("daphne")
        or apps.is_installed("channels")
        or getattr(settings, "CHANNEL_LAYERS", None)
    )


@register(Tags.compatibility)
def check_asgi_application(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """pyhub_ai.W002: daphne or channels is installed, but no ``ASGI_APPLICATION`` serves them."""
    if getattr(settings, "ASGI_APPLICATION", None) or not serves_websocket_chat():
        return []
    return [
        Warning(
            "ASGI_APPLICATION is not set, so no websocket chat can be served.",
            hint="Set ASGI_APPLICATION = 'yourproject.asgi.application' and route the consumers in "
            "asgi.py (see the pyhub_ai README). A project that only uses the models and "
            "DjangoChatMessageHistory needs neither daphne nor channels in INSTALLED_APPS.",
            id="pyhub_ai.W002",
        )
    ]


@register(Tags.compatibility)
def check_channel_layers(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """pyhub_ai.W003: no ``CHANNEL_LAYERS``, so tabs of a thread do not see each other's turns.

    pyhub_ai.W004: the in-memory channel layer outside ``DEBUG``: it reaches one process only.
    """
    if not serves_websocket_chat():
        return []
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    backend = layers.get("default", {}).get("BACKEND", "")
    if not backend:
        return [
            Warning(
                "CHANNEL_LAYERS has no 'default' layer: the chat works, but a second tab of a "
                "conversation does not see the first tab's turns live.",
                hint="For one process: CHANNEL_LAYERS = {'default': {'BACKEND': "
                "'channels.layers.InMemoryChannelLayer'}}. For several daphne processes: "
                "pip install 'pyhub_ai[redis]' and use 'channels_redis.core.RedisChannelLayer'.",
                id="pyhub_ai.W003",
            )
        ]
    if backend == "channels.layers.InMemoryChannelLayer" and not settings.DEBUG:
        return [
            Warning(
                "The in-memory channel layer reaches one process only: with several daphne "
                "processes, tabs served by different processes do not see each other's turns.",
                hint="pip install 'pyhub_ai[redis]' and set CHANNEL_LAYERS to "
                "'channels_redis.core.RedisChannelLayer' (see docs/deployment.md), or silence "
                "pyhub_ai.W004 if the site runs a single process.",
                id="pyhub_ai.W004",
            )
        ]
    return []


@register(Tags.compatibility)
def check_static_files_under_daphne(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """pyhub_ai.W005: nothing serves the chat page's CSS and JavaScript under daphne.

    ``runserver`` serves static files in ``DEBUG``; daphne, uvicorn and the like serve none. Passes
    with WhiteNoise's middleware, with an ASGI application wrapped in Django's
    ``ASGIStaticFilesHandler``, or outside ``DEBUG`` with a ``STATIC_ROOT`` (collectstatic's
    output, served by the web server).
    """
    if not serves_websocket_chat() or not apps.is_installed("django.contrib.staticfiles"):
        return []
    if WHITENOISE_MIDDLEWARE in settings.MIDDLEWARE or (not settings.DEBUG and getattr(settings, "STATIC_ROOT", None)):
        return []
    if asgi_application_serves_static_files():
        return []
    return [
        Warning(
            "Nothing serves static files under daphne: the chat page would load without its "
            "CSS and JavaScript (runserver serves them in DEBUG, daphne does not).",
            hint=f"Add '{WHITENOISE_MIDDLEWARE}' to MIDDLEWARE right after SecurityMiddleware "
            "(pyhub_ai installs WhiteNoise), or set STATIC_ROOT, run collectstatic and serve it "
            "from your web server with DEBUG = False.",
            id="pyhub_ai.W005",
        )
    ]


def asgi_application_serves_static_files() -> bool:
    """Whether ``ASGI_APPLICATION`` wraps Django's ``ASGIStaticFilesHandler`` somewhere.

    Follows the usual wrappers (channels' routers and middleware keep the inner application as
    ``application_mapping``, ``application`` or ``inner``). An application that cannot be
    imported is left to the error it raises when served.
    """
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        return False
    try:
        pending = [import_string(path)]
    except Exception:  # noqa: BLE001  (reported when the server imports it)
        return True
    seen: set[int] = set()
    while pending:
        app = pending.pop()
        if id(app) in seen:
            continue
        seen.add(id(app))
        if isinstance(app, ASGIStaticFilesHandler):
            return True
        pending.extend(getattr(app, "application_mapping", {}).values())
        pending.extend(inner for name in ("application", "inner", "app") if (inner := getattr(app, name, None)) is not None)
    return False


@register(Tags.compatibility)
def check_chat_consumer(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """pyhub_ai.E006: ``PYHUB_AI_CHAT_CONSUMER`` does not name a consumer class."""
    path = conf.CHAT_CONSUMER
    reason = unusable_import(path, lambda value: isinstance(value, type) and hasattr(value, "as_asgi"), "a consumer class")
    if reason is None:
        return []
    return [
        Error(
            f"PYHUB_AI_CHAT_CONSUMER = {path!r} cannot be served by pyhub_ai.routing: {reason}.",
            hint="Give the dotted path of an AgentChatConsumer subclass (e.g. 'chat.consumers.TutorConsumer'), "
            "or remove the setting to use pyhub_ai.consumers.ChatConsumer.",
            id="pyhub_ai.E006",
        )
    ]


@register(Tags.compatibility)
def check_llm_credentials(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """pyhub_ai.W001: no LLM credentials, so the offline demo model will answer."""
    if has_llm_credentials() or not serves_websocket_chat():
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
    reason = unusable_import(path, callable, "callable")
    if reason is None:
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
    """pyhub_ai.E005: PYHUB_AI_RATE_LIMIT or PYHUB_AI_GLOBAL_RATE_LIMIT is not a rate like
    "30/m", or the cache that counts them does not exist."""
    errors = []
    rates = {"PYHUB_AI_RATE_LIMIT": conf.RATE_LIMIT, "PYHUB_AI_GLOBAL_RATE_LIMIT": conf.GLOBAL_RATE_LIMIT}
    for name, rate in rates.items():
        if not rate:
            continue
        try:
            parse_rate(rate)
        except (TypeError, ValueError) as exc:
            errors.append(
                Error(f"{name}: {exc}", hint='Use a rate like "30/m" (units s, m, h, d), or None to turn the limit off.', id="pyhub_ai.E005")
            )
    if any(rates.values()) and conf.RATE_LIMIT_CACHE not in settings.CACHES:
        errors.append(
            Error(
                f"PYHUB_AI_RATE_LIMIT_CACHE = {conf.RATE_LIMIT_CACHE!r} is not a key of CACHES.",
                hint="Name one of your CACHES (a shared one, such as Redis, when several workers serve the chat).",
                id="pyhub_ai.E005",
            )
        )
    return errors


@register(Tags.compatibility)
def check_llm_fast_stream(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """pyhub_ai.E010: PYHUB_AI_LLM_FAST_STREAM is not a boolean."""
    value = getattr(settings, "PYHUB_AI_LLM_FAST_STREAM", True)
    if isinstance(value, bool):
        return []
    return [
        Error(
            f"PYHUB_AI_LLM_FAST_STREAM must be True or False, not {value!r}.",
            hint="Remove the setting to keep the default (True), or set it to False to stream every reply "
            "through LangChain's astream.",
            id="pyhub_ai.E010",
        )
    ]



def _table_errors(name: str, problems: list[str], hint: str, check_id: str) -> list[Error]:
    """One error per problem of the table setting ``name``."""
    return [Error(f"{name}: {problem}.", hint=hint, id=check_id) for problem in problems]


@register(Tags.compatibility)
def check_model_prices(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """pyhub_ai.E011: PYHUB_AI_MODEL_PRICES is not a table of prices per million tokens."""
    value = getattr(settings, "PYHUB_AI_MODEL_PRICES", None)
    hint = (
        'For example PYHUB_AI_MODEL_PRICES = {"openai:gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1.25}} '
        "(per million tokens; a model not listed costs 0)."
    )
    return [] if value is None else _table_errors("PYHUB_AI_MODEL_PRICES", price_problems(value), hint, "pyhub_ai.E011")


@register(Tags.compatibility)
def check_budgets(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """pyhub_ai.E012: PYHUB_AI_BUDGETS is not a table of limits (see ``pyhub_ai.budgets``)."""
    value = getattr(settings, "PYHUB_AI_BUDGETS", None)
    hint = (
        'For example PYHUB_AI_BUDGETS = {"user": {"day": {"tokens": 200000}, "month": {"cost": 5}}, '
        '"site": {"month": {"cost": 500}}} (keys: user, groups, anonymous, site; periods: day, month; units: tokens, cost).'
    )
    return [] if value is None else _table_errors("PYHUB_AI_BUDGETS", budget_problems(value), hint, "pyhub_ai.E012")


@register(Tags.compatibility)
def check_cost_budgets_have_prices(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """pyhub_ai.W006: PYHUB_AI_BUDGETS limits cost, but PYHUB_AI_MODEL_PRICES prices nothing."""
    budgets = getattr(settings, "PYHUB_AI_BUDGETS", None)
    if not isinstance(budgets, dict) or conf.MODEL_PRICES or not (where := cost_limits(budgets)):
        return []
    return [
        Warning(
            f"PYHUB_AI_BUDGETS limits cost ({', '.join(where)}), but PYHUB_AI_MODEL_PRICES is empty: "
            "every model call costs 0, so these limits never refuse anything.",
            hint='Price your models, e.g. PYHUB_AI_MODEL_PRICES = {"openai:gpt-4o": {"input": 2.5, "output": 10}}, '
            'or limit "tokens" instead of "cost".',
            id="pyhub_ai.W006",
        )
    ]
