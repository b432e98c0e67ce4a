"""The OpenAI key never reaches a client, a page or the log; provider error text never reaches a client.

A real ``ChatOpenAI`` talks to a local OpenAI-compatible server (tests/fake_openai.py) with a
recognisable fake key. Everything a visitor or an admin can see — every websocket frame, the
chat page, the admin pages of the conversation — and every log record (pyhub_ai and the root
logger, at DEBUG, so the OpenAI client's own logging is included) is searched for the key. The
fake server's records prove the key was really used, so these tests can fail.
"""
from __future__ import annotations

import json
import logging

import pytest
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from example.models import LLMChatRoom
from pyhub_ai.llm import _openai_model
from pyhub_ai.models import Conversation, ConversationMessage

from .fake_openai import FakeOpenAI
from .routing import PlainChatConsumer, application

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-test-SECRET-123456"
REPLY = "Hello from the fake model, with usage."
DETAIL = "INTERNAL-DETAIL-XYZ"


@pytest.fixture
def fake_openai():
    with FakeOpenAI(reply=REPLY) as server:
        yield server


@pytest.fixture(autouse=True)
def no_real_credentials(monkeypatch, settings):
    """Whatever the developer's shell says, nothing but the fake server is ever configured."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
        setattr(settings, name, "")
    # One ChatOpenAI per configuration is cached; its HTTP client belongs to an earlier test's loop.
    _openai_model.cache_clear()
    yield
    _openai_model.cache_clear()


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="pyhub_ai")
    return caplog


def configure(source: str, server: FakeOpenAI, settings, monkeypatch) -> None:
    """Point the consumer at ``server`` with the key, from one of the places the key is read."""
    if source == "setting":
        settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = SECRET, server.base_url
    elif source == "environment":
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    else:
        monkeypatch.setattr(PlainChatConsumer, "llm_openai_api_key", SECRET)
        monkeypatch.setattr(PlainChatConsumer, "llm_openai_base_url", server.base_url)


async def run_turn(user, conversation, text: str = "hello") -> list[dict]:
    """Every frame of one connection: welcome, history and one turn (up to its last frame)."""
    communicator = WebsocketCommunicator(application, f"/ws/plain/{conversation.pk}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    frames = [await communicator.receive_json_from(timeout=5), await communicator.receive_json_from(timeout=5)]
    await communicator.send_json_to({"type": "user_message", "text": text})
    while frames[-1]["type"] not in ("stream_end", "error"):
        frames.append(await communicator.receive_json_from(timeout=10))
    await communicator.disconnect()
    return frames


async def pages_an_admin_and_the_user_can_see(user, conversation) -> dict[str, str]:
    """The chat page (as the user) and the admin pages of the conversation (as a superuser)."""
    from django.contrib.auth import get_user_model

    pages = {}
    room = await LLMChatRoom.objects.acreate()
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get(f"/example/chat/{room.pk}/")
    assert response.status_code == 200
    pages["chat page"] = response.content.decode()

    admin = await get_user_model().objects.acreate(username="root", is_staff=True, is_superuser=True)
    await client.aforce_login(admin)
    urls = [
        "/admin/pyhub_ai/conversation/",
        f"/admin/pyhub_ai/conversation/{conversation.pk}/change/",
        "/admin/pyhub_ai/conversationmessage/",
    ]
    urls += [f"/admin/pyhub_ai/conversationmessage/{pk}/change/" async for pk in ConversationMessage.objects.values_list("pk", flat=True)]
    for url in urls:
        response = await client.get(url)
        assert response.status_code == 200, url
        pages[url] = response.content.decode()
    return pages


async def stored_text() -> str:
    rows = [row async for row in ConversationMessage.objects.values("content")]
    conversations = [row async for row in Conversation.objects.values("metadata", "title")]
    return json.dumps([rows, conversations], default=str)


def everything_logged(logs) -> str:
    """Every record's message and arguments, and the formatted output with tracebacks."""
    records = [f"{record.name} {record.getMessage()} {record.args!r} {record.exc_text or ''}" for record in logs.records]
    return logs.text + "\n".join(records)


@pytest.mark.parametrize("source", ["setting", "environment", "consumer attribute"])
async def test_the_key_is_sent_to_the_provider_and_nowhere_else(user_a, fake_openai, logs, settings, monkeypatch, source):
    configure(source, fake_openai, settings, monkeypatch)
    conversation = await Conversation.objects.acreate(user=user_a)

    frames = await run_turn(user_a, conversation)

    # The turn really went through the fake provider, with the key, and streamed its reply.
    assert frames[-1]["type"] == "stream_end" and frames[-1]["message"]["text"] == REPLY
    assert "".join(f["text"] for f in frames if f["type"] == "stream_delta") == REPLY
    [request] = fake_openai.completions()
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.body["stream"] is True and request.body["model"] == "gpt-4o-mini"
    conversation = await Conversation.objects.aget(pk=conversation.pk)
    assert conversation.output_tokens == len(REPLY.split())  # the final usage chunk was read

    assert SECRET not in json.dumps(frames)
    for name, html in (await pages_an_admin_and_the_user_can_see(user_a, conversation)).items():
        assert SECRET not in html, name
    assert SECRET not in await stored_text()
    assert logs.records, "nothing was logged at DEBUG: the log check below would prove nothing"
    assert SECRET not in everything_logged(logs)


async def test_provider_error_text_reaches_the_log_but_never_the_client(user_a, fake_openai, logs, settings, monkeypatch):
    configure("setting", fake_openai, settings, monkeypatch)
    fake_openai.fail_with(500, f"{DETAIL}: upstream shard 7 exploded")
    conversation = await Conversation.objects.acreate(user=user_a)

    frames = await run_turn(user_a, conversation)

    assert len(fake_openai.completions()) == 1
    error = frames[-1]
    assert error["type"] == "error" and error["code"] == "llm_error"
    assert set(error) == {"type", "code", "message", "turn_id"}
    assert DETAIL not in json.dumps(frames) and SECRET not in json.dumps(frames)
    assert DETAIL not in await stored_text()
    rows = [(row.role, row.status) async for row in ConversationMessage.objects.order_by("pk")]
    assert rows == [("human", "complete"), ("ai", "error")]
    for name, html in (await pages_an_admin_and_the_user_can_see(user_a, conversation)).items():
        assert DETAIL not in html and SECRET not in html, name
    # Operators need the provider's explanation: it is logged, with the turn.
    assert DETAIL in everything_logged(logs)
    assert SECRET not in everything_logged(logs)


ECHOING_PROVIDER = "Invalid request from {authorization} (" + DETAIL + ")"


async def test_a_provider_that_echoes_the_key_in_its_error_never_gets_it_to_the_client(user_a, fake_openai, logs, settings, monkeypatch):
    configure("setting", fake_openai, settings, monkeypatch)
    fake_openai.fail_with(500, ECHOING_PROVIDER)
    conversation = await Conversation.objects.acreate(user=user_a)

    frames = await run_turn(user_a, conversation)

    assert frames[-1]["code"] == "llm_error"
    assert SECRET not in json.dumps(frames) and DETAIL not in json.dumps(frames)
    assert SECRET not in await stored_text()
    for name, html in (await pages_an_admin_and_the_user_can_see(user_a, conversation)).items():
        assert SECRET not in html, name


async def test_a_provider_that_echoes_the_key_in_its_error_never_gets_it_into_the_log(user_a, fake_openai, logs, settings, monkeypatch):
    configure("setting", fake_openai, settings, monkeypatch)
    fake_openai.fail_with(500, ECHOING_PROVIDER)
    conversation = await Conversation.objects.acreate(user=user_a)

    frames = await run_turn(user_a, conversation)

    assert frames[-1]["code"] == "llm_error"
    assert fake_openai.completions()[0].headers["authorization"] == f"Bearer {SECRET}"
    assert DETAIL in everything_logged(logs)
    assert SECRET not in everything_logged(logs)
