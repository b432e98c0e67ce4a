"""System checks: each id fires for a bad configuration and stays quiet for a good one."""
from __future__ import annotations

import pytest
from django.core.checks.registry import registry
from django.test import override_settings

from pyhub_ai.checks import check_asgi_application, check_llm_credentials, check_numeric_settings


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


# -- pyhub_ai.E002: ASGI_APPLICATION ------------------------------------------------------------


def test_a_missing_asgi_application_is_error_e002():
    with override_settings(ASGI_APPLICATION=None):
        errors = check_asgi_application()

    assert ids(errors) == ["pyhub_ai.E002"]
    assert "ASGI_APPLICATION" in errors[0].hint


def test_a_configured_asgi_application_passes():
    with override_settings(ASGI_APPLICATION="mysite.asgi.application"):
        assert check_asgi_application() == []


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


@pytest.mark.parametrize("check", [check_numeric_settings, check_asgi_application, check_llm_credentials])
def test_the_check_is_registered_with_django(check):
    assert check in registry.get_checks()
