"""Which chat model answers, how it is configured, and how prompts are filled."""
from __future__ import annotations

import importlib.util
import operator
from functools import reduce

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.utils import translation
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from pyhub_ai.llm import OfflineChatModel, get_chat_model, parse_model
from pyhub_ai.mixins.llm import fill_template
from pyhub_ai.specs import LLMModel

# -- Model names -----------------------------------------------------------------------------


def test_an_llm_model_member_is_a_provider_model_string():
    assert LLMModel.OPENAI_GPT_4O.value == "openai:gpt-4o"
    assert str(LLMModel.OPENAI_GPT_4O) == "openai:gpt-4o"
    assert f"{LLMModel.OPENAI_GPT_4O}" == "openai:gpt-4o"


@pytest.mark.parametrize(
    "model, expected",
    [
        (LLMModel.OPENAI_GPT_4O, ("openai", "gpt-4o")),
        (LLMModel.OPENAI_GPT_4_1_MINI, ("openai", "gpt-4.1-mini")),
        (LLMModel.OFFLINE, ("offline", "demo")),
        ("openai:gpt-4.1", ("openai", "gpt-4.1")),
        ("anthropic:claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
        ("Ollama:llama3.2", ("ollama", "llama3.2")),
        ("gpt-4o-mini", ("openai", "gpt-4o-mini")),
    ],
    ids=str,
)
def test_parse_model_splits_provider_and_model(model, expected):
    assert parse_model(model) == expected


def test_an_empty_model_name_is_a_configuration_error():
    with pytest.raises(ImproperlyConfigured, match="llm_model is empty"):
        parse_model("  ")


# -- get_chat_model --------------------------------------------------------------------------


@pytest.fixture
def no_credentials(monkeypatch):
    """No OpenAI key or endpoint in the settings or the environment."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    with override_settings(OPENAI_API_KEY="", OPENAI_BASE_URL=""):
        yield monkeypatch


def test_without_credentials_the_offline_model_answers(no_credentials):
    assert isinstance(get_chat_model(LLMModel.OPENAI_GPT_4O), OfflineChatModel)


def test_the_offline_provider_gives_the_offline_model_even_with_a_key(no_credentials):
    assert isinstance(get_chat_model(LLMModel.OFFLINE, api_key="sk-argument"), OfflineChatModel)


def test_a_key_given_as_argument_gives_an_openai_model(no_credentials):
    model = get_chat_model("openai:gpt-4o", api_key="sk-argument")

    assert isinstance(model, ChatOpenAI)
    assert model.model_name == "gpt-4o"
    assert model.openai_api_key.get_secret_value() == "sk-argument"


def test_a_key_from_the_django_setting_gives_an_openai_model(no_credentials):
    with override_settings(OPENAI_API_KEY="sk-setting"):
        model = get_chat_model("openai:gpt-4o")

    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_key.get_secret_value() == "sk-setting"


def test_a_key_from_the_environment_gives_an_openai_model(no_credentials):
    no_credentials.setenv("OPENAI_API_KEY", "sk-environment")

    model = get_chat_model("openai:gpt-4o")

    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_key.get_secret_value() == "sk-environment"


def test_the_argument_beats_the_setting_and_the_setting_beats_the_environment(no_credentials):
    no_credentials.setenv("OPENAI_API_KEY", "sk-environment")
    no_credentials.setenv("OPENAI_BASE_URL", "http://environment.invalid/v1")
    with override_settings(OPENAI_API_KEY="sk-setting", OPENAI_BASE_URL="http://setting.invalid/v1"):
        from_argument = get_chat_model("gpt-4o", api_key="sk-argument", base_url="http://argument.invalid/v1")
        from_setting = get_chat_model("gpt-4o")

    assert from_argument.openai_api_key.get_secret_value() == "sk-argument"
    assert from_argument.openai_api_base == "http://argument.invalid/v1"
    assert from_setting.openai_api_key.get_secret_value() == "sk-setting"
    assert from_setting.openai_api_base == "http://setting.invalid/v1"


def test_a_base_url_without_a_key_gives_an_openai_model_for_that_server(no_credentials):
    model = get_chat_model("openai:llama3", base_url="http://localhost:11434/v1")

    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_base == "http://localhost:11434/v1"
    assert model.openai_api_key.get_secret_value()  # a placeholder: the client refuses an empty key


def test_the_same_configuration_reuses_one_model(no_credentials):
    first = get_chat_model(LLMModel.OPENAI_GPT_4O_MINI, temperature=0.2, api_key="sk-cached")
    second = get_chat_model("openai:gpt-4o-mini", temperature=0.2, api_key="sk-cached")
    other_temperature = get_chat_model("openai:gpt-4o-mini", temperature=0.9, api_key="sk-cached")

    assert first is second
    assert other_temperature is not first
    assert other_temperature.temperature == 0.9


def test_an_unknown_provider_is_a_configuration_error_naming_the_known_ones():
    with pytest.raises(ImproperlyConfigured) as excinfo:
        get_chat_model("mistery:model-1")

    message = str(excinfo.value)
    assert "'mistery'" in message
    for provider in ("anthropic", "offline", "ollama", "openai"):
        assert provider in message


def test_a_provider_whose_package_is_missing_names_the_extra_to_install():
    if importlib.util.find_spec("langchain_anthropic") is not None:
        pytest.skip("langchain_anthropic is installed here")

    with pytest.raises(ImproperlyConfigured, match=r"pyhub_ai\[anthropic\]"):
        get_chat_model("anthropic:claude-sonnet-4-5")


# -- The offline demo model ------------------------------------------------------------------

CONVERSATION = [
    SystemMessage("You are a barista."),
    HumanMessage("Good morning"),
    AIMessage("Hello!"),
    HumanMessage("One latte, please"),
]


async def streamed(model, messages):
    return [chunk async for chunk in model.astream(messages)]


async def test_the_offline_model_streams_the_same_text_it_returns_whole():
    model = OfflineChatModel()

    chunks = await streamed(model, CONVERSATION)

    assert len([chunk for chunk in chunks if chunk.content]) > 1
    assert "".join(chunk.content for chunk in chunks) == model.invoke(CONVERSATION).content


def test_the_offline_model_says_what_it_is_and_quotes_the_last_user_message():
    with translation.override("en"):
        reply = OfflineChatModel().invoke(CONVERSATION).content

    assert "offline demo model" in reply
    assert "“One latte, please”" in reply
    assert "Good morning" not in reply


def test_the_offline_model_answers_the_same_input_the_same_way():
    model = OfflineChatModel()

    assert model.invoke(CONVERSATION).content == model.invoke(list(CONVERSATION)).content


async def test_the_offline_models_streamed_reply_reports_token_usage():
    chunks = await streamed(OfflineChatModel(), CONVERSATION)

    usage = reduce(operator.add, chunks).usage_metadata

    assert usage["input_tokens"] > 0
    assert usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


# -- fill_template ---------------------------------------------------------------------------


def test_fill_template_fills_korean_placeholders():
    assert fill_template("{언어}로 대답하세요.", {"언어": "한국어"}) == "한국어로 대답하세요."


def test_fill_template_turns_doubled_braces_into_literal_ones():
    assert fill_template("{{name}} is filled from {name}", {"name": "Tom"}) == "{name} is filled from Tom"


def test_fill_template_leaves_unknown_placeholders_as_they_are():
    assert fill_template("Hello {name}, today is {day}.", {"name": "Tom"}) == "Hello Tom, today is {day}."


def test_fill_template_leaves_json_examples_as_they_are():
    template = 'Answer as JSON, like {"a": 1}.'

    assert fill_template(template, {"a": "oops"}) == template


def test_the_no_key_warning_is_logged_once_per_process_not_per_turn(settings, monkeypatch, caplog):
    from pyhub_ai import llm

    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    llm._warn_offline_once.cache_clear()
    with caplog.at_level("WARNING", logger="pyhub_ai.llm"):
        for _ in range(3):
            llm.get_chat_model("openai:gpt-4o-mini")
    warnings = [record for record in caplog.records if "offline demo model answers" in record.getMessage()]
    assert len(warnings) == 1
