"""System checks: each id fires for a bad configuration and stays quiet for a good one."""
from __future__ import annotations

import pytest
from django.core.checks.registry import registry
from django.test import override_settings

from django.core.checks import Warning

from pyhub_ai.checks import (
    WHITENOISE_MIDDLEWARE,
    check_asgi_application,
    check_channel_layers,
    check_chat_consumer,
    check_llm_credentials,
    check_numeric_settings,
    check_static_files_under_daphne,
    serves_websocket_chat,
)


def ids(messages):
    return [message.id for message in messages]


# -- pyhub_ai.E001: numeric settings ------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [
        ("PYHUB_AI_HISTORY_MAX_MESSAGES", 0),
        ("PYHUB_AI_HISTORY_MAX_MESSAGES", "10"),
        ("PYHUB_AI_HISTORY_MAX_MESSAGES", True),
        ("PYHUB_AI_HISTORY_MAX_MESSAGES", 10.0),
        ("PYHUB_AI_HISTORY_PAGE_SIZE", -5),
        ("PYHUB_AI_MAX_MESSAGE_LENGTH", None),
        ("PYHUB_AI_OFFLINE_MODEL_DELAY", -1),
        ("PYHUB_AI_OFFLINE_MODEL_DELAY", "0.1"),
    ],
)
def test_a_bad_numeric_setting_is_error_e001_naming_the_setting(name, value):
    with override_settings(**{name: value}):
        errors = check_numeric_settings()

    assert ids(errors) == ["pyhub_ai.E001"]
    assert name in errors[0].msg
    assert repr(value) in errors[0].msg


@pytest.mark.parametrize(
    "name, value",
    [
        ("PYHUB_AI_HISTORY_MAX_MESSAGES", 1),
        ("PYHUB_AI_HISTORY_MAX_MESSAGES", 50),
        ("PYHUB_AI_HISTORY_PAGE_SIZE", 20),
        ("PYHUB_AI_MAX_MESSAGE_LENGTH", 4000),
        ("PYHUB_AI_OFFLINE_MODEL_DELAY", 0),
        ("PYHUB_AI_OFFLINE_MODEL_DELAY", 0.03),
    ],
)
def test_a_good_numeric_setting_passes(name, value):
    with override_settings(**{name: value}):
        assert check_numeric_settings() == []


def test_unset_numeric_settings_pass(settings):
    for name in ("PYHUB_AI_HISTORY_MAX_MESSAGES", "PYHUB_AI_HISTORY_PAGE_SIZE", "PYHUB_AI_MAX_MESSAGE_LENGTH", "PYHUB_AI_OFFLINE_MODEL_DELAY"):
        if hasattr(settings, name):
            delattr(settings, name)

    assert check_numeric_settings() == []


# -- Which checks apply: a project that serves the websocket chat, or only uses the models --------

#: A project that uses only the models and DjangoChatMessageHistory (no daphne, no channels).
MODELS_ONLY = dict(
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
        "pyhub_ai",
    ],
    ASGI_APPLICATION=None,
    CHANNEL_LAYERS={},
    MIDDLEWARE=[],
    DEBUG=True,
)


def test_a_models_only_project_gets_no_chat_check(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with override_settings(**MODELS_ONLY, OPENAI_API_KEY="", OPENAI_BASE_URL=""):
        assert serves_websocket_chat() is False
        assert check_asgi_application() == []
        assert check_channel_layers() == []
        assert check_static_files_under_daphne() == []
        assert check_llm_credentials() == []


def test_the_demo_serves_the_websocket_chat():
    assert serves_websocket_chat() is True


# -- pyhub_ai.W002: ASGI_APPLICATION ------------------------------------------------------------


def test_a_missing_asgi_application_with_daphne_installed_is_warning_w002():
    with override_settings(ASGI_APPLICATION=None):
        warnings = check_asgi_application()

    assert ids(warnings) == ["pyhub_ai.W002"]
    assert isinstance(warnings[0], Warning)
    assert "ASGI_APPLICATION" in warnings[0].hint


def test_a_configured_asgi_application_passes():
    with override_settings(ASGI_APPLICATION="mysite.asgi.application"):
        assert check_asgi_application() == []


# -- pyhub_ai.W003 / W004: channel layers ---------------------------------------------------------


def test_no_channel_layers_is_warning_w003_naming_both_layers():
    with override_settings(CHANNEL_LAYERS={}):
        warnings = check_channel_layers()

    assert ids(warnings) == ["pyhub_ai.W003"]
    assert "InMemoryChannelLayer" in warnings[0].hint and "RedisChannelLayer" in warnings[0].hint


def test_the_in_memory_layer_outside_debug_is_warning_w004():
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}, DEBUG=False):
        warnings = check_channel_layers()

    assert ids(warnings) == ["pyhub_ai.W004"]
    assert "channels_redis" in warnings[0].hint


def test_the_in_memory_layer_in_debug_passes():
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}, DEBUG=True):
        assert check_channel_layers() == []


def test_the_redis_layer_passes():
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}, DEBUG=False):
        assert check_channel_layers() == []


# -- pyhub_ai.W005: static files under daphne -------------------------------------------------------

#: An ASGI application that serves no static files (Django's own, without a wrapper).
BARE_ASGI = "tests.test_checks.bare_asgi_application"


def bare_asgi_application():  # only imported by the check, never served
    raise AssertionError("not served")


def test_static_files_served_by_nothing_is_warning_w005():
    with override_settings(ASGI_APPLICATION=BARE_ASGI, MIDDLEWARE=[], DEBUG=True):
        warnings = check_static_files_under_daphne()

    assert ids(warnings) == ["pyhub_ai.W005"]
    assert WHITENOISE_MIDDLEWARE in warnings[0].hint and "collectstatic" in warnings[0].hint


def test_whitenoise_middleware_passes_w005():
    with override_settings(ASGI_APPLICATION=BARE_ASGI, MIDDLEWARE=[WHITENOISE_MIDDLEWARE], DEBUG=True):
        assert check_static_files_under_daphne() == []


def test_an_asgi_application_wrapped_in_the_static_files_handler_passes_w005():
    """The demo's asgi.py wraps Django's application in ASGIStaticFilesHandler (in DEBUG)."""
    with override_settings(ASGI_APPLICATION="mysite.asgi.application", MIDDLEWARE=[], DEBUG=True):
        assert check_static_files_under_daphne() == []


def test_collectstatic_served_by_the_web_server_passes_w005(tmp_path):
    with override_settings(ASGI_APPLICATION=BARE_ASGI, MIDDLEWARE=[], DEBUG=False, STATIC_ROOT=tmp_path):
        assert check_static_files_under_daphne() == []


# -- pyhub_ai.E006: PYHUB_AI_CHAT_CONSUMER ----------------------------------------------------------


@pytest.mark.parametrize(
    "path, reason",
    [("chat.consumers.Missing", "No module named 'chat'"), ("pyhub_ai.conf.conf", "not a consumer class")],
)
def test_a_chat_consumer_setting_that_names_no_consumer_is_error_e006(path, reason):
    with override_settings(PYHUB_AI_CHAT_CONSUMER=path):
        errors = check_chat_consumer()

    assert ids(errors) == ["pyhub_ai.E006"]
    assert reason in errors[0].msg


@pytest.mark.parametrize("path", ["pyhub_ai.consumers.ChatConsumer", "tests.routing.PlainChatConsumer"])
def test_a_chat_consumer_class_passes_e006(path):
    with override_settings(PYHUB_AI_CHAT_CONSUMER=path):
        assert check_chat_consumer() == []


# -- pyhub_ai.W001: LLM credentials ---------------------------------------------------------------


@pytest.fixture
def no_credentials(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with override_settings(OPENAI_API_KEY="", OPENAI_BASE_URL=""):
        yield monkeypatch


def test_no_llm_credentials_is_warning_w001(no_credentials):
    warnings = check_llm_credentials()

    assert ids(warnings) == ["pyhub_ai.W001"]
    assert "offline demo model" in warnings[0].msg


def test_an_openai_key_setting_silences_w001(no_credentials):
    with override_settings(OPENAI_API_KEY="sk-test"):
        assert check_llm_credentials() == []


def test_an_openai_key_in_the_environment_silences_w001(no_credentials):
    no_credentials.setenv("OPENAI_API_KEY", "sk-test")

    assert check_llm_credentials() == []


def test_an_openai_base_url_silences_w001(no_credentials):
    with override_settings(OPENAI_BASE_URL="http://localhost:11434/v1"):
        assert check_llm_credentials() == []


# -- Registration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check",
    [
        check_numeric_settings,
        check_asgi_application,
        check_channel_layers,
        check_static_files_under_daphne,
        check_chat_consumer,
        check_llm_credentials,
    ],
)
def test_the_check_is_registered_with_django(check):
    assert check in registry.get_checks()


# -- pyhub_ai.E011: PYHUB_AI_MODEL_PRICES, pyhub_ai.E012: PYHUB_AI_BUDGETS -------------------------


@pytest.mark.parametrize(
    "prices",
    [["openai:gpt-4o"], {"gpt-4o": {"input": 1}}, {"openai:gpt-4o": 2.5}, {"openai:gpt-4o": {"inputs": 1}}, {"openai:gpt-4o": {"output": -1}}, {"openai:gpt-4o": {"input": "2.5"}}],
)
def test_model_prices_that_are_not_a_price_table_are_an_error(prices):
    from pyhub_ai.checks import check_model_prices

    with override_settings(PYHUB_AI_MODEL_PRICES=prices):
        assert set(ids(check_model_prices())) == {"pyhub_ai.E011"}


def test_a_price_table_passes():
    from pyhub_ai.checks import check_model_prices

    assert check_model_prices() == []
    with override_settings(PYHUB_AI_MODEL_PRICES={"openai:gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1.25}, "offline:demo": {}}):
        assert check_model_prices() == []


@pytest.mark.parametrize(
    "budgets",
    [
        [1],
        {"users": {"day": {"tokens": 1}}},
        {"user": {"week": {"tokens": 1}}},
        {"user": {"day": {"dollars": 1}}},
        {"user": {"day": {"tokens": -1}}},
        {"user": {"day": 100}},
        {"groups": {"staff": {"month": {"cost": "5"}}}},
        {"groups": ["staff"]},
        {"site": {"month": {"cost": True}}},
    ],
)
def test_budgets_that_are_not_limits_are_an_error(budgets):
    from pyhub_ai.checks import check_budgets

    with override_settings(PYHUB_AI_BUDGETS=budgets):
        assert set(ids(check_budgets())) == {"pyhub_ai.E012"}


def test_budgets_as_documented_pass():
    from pyhub_ai.checks import check_budgets

    assert check_budgets() == []
    budgets = {
        "user": {"day": {"tokens": 200_000}, "month": {"cost": 5}},
        "groups": {"staff": {}, "trial": {"day": {"tokens": 20_000}}},
        "anonymous": {"day": {"tokens": 20_000}},
        "site": {"month": {"cost": 500.0}},
    }
    with override_settings(PYHUB_AI_BUDGETS=budgets):
        assert check_budgets() == []


# -- pyhub_ai.W006: cost budgets without prices -----------------------------------------------------


def test_a_cost_budget_without_prices_is_a_warning():
    from pyhub_ai.checks import check_cost_budgets_have_prices

    with override_settings(PYHUB_AI_BUDGETS={"user": {"day": {"tokens": 10}}, "groups": {"trial": {"month": {"cost": 1}}}}):
        [warning] = check_cost_budgets_have_prices()
        assert warning.id == "pyhub_ai.W006" and "groups['trial']" in warning.msg


@pytest.mark.parametrize(
    "budgets, prices",
    [(None, None), ({"user": {"day": {"tokens": 10}}}, None), ({"site": {"month": {"cost": 5}}}, {"openai:gpt-4o": {"input": 2.5}})],
)
def test_token_budgets_or_priced_models_need_no_warning(budgets, prices):
    from pyhub_ai.checks import check_cost_budgets_have_prices

    with override_settings(PYHUB_AI_BUDGETS=budgets, PYHUB_AI_MODEL_PRICES=prices):
        assert check_cost_budgets_have_prices() == []
