"""Shared fixtures: users, conversations, and fake chat models plugged into the consumers."""
from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from .fake_models import reply_chunks

# Live-server tests start daphne in a child process; forked children hang on database calls.
multiprocessing.set_start_method("spawn", force=True)


@pytest.fixture
def user_a(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-pass-123")


@pytest.fixture
def user_b(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-pass-123")


@pytest.fixture(autouse=True)
def _close_async_orm_connections() -> Iterator[None]:
    """After each test, close the database connections of the async ORM's worker thread.

    Async tests run the ORM (and channels' ``database_sync_to_async``) in asgiref's single
    thread-sensitive executor thread, whose connections nobody closes. On PostgreSQL a leftover
    one makes ``DROP DATABASE`` of the test database wait 5 s and then fail.
    """
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)
    # And those of the thread where DjangoSaver saves sync graphs' checkpoints (pyhub_ai.dbthread).
    from pyhub_ai import dbthread

    dbthread.close_connections()


class RecordingFakeChatModel(GenericFakeChatModel):
    """A fake streaming model that records every prompt it was sent (``calls``)."""

    calls: list = []

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        # invoke() and (through GenericFakeChatModel._stream) astream() both come here once.
        self.calls.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def fake_model(*replies: str | AIMessage) -> RecordingFakeChatModel:
    """A fake model answering ``replies`` in order, streaming word by word."""
    messages = [reply if isinstance(reply, AIMessage) else AIMessage(content=reply) for reply in replies]
    return RecordingFakeChatModel(messages=iter(messages), calls=[])


@pytest.fixture
def use_model(monkeypatch) -> Iterator:
    """``use_model(model)`` makes every consumer answer with ``model``."""
    from pyhub_ai.mixins.llm import LLMMixin

    def install(model):
        monkeypatch.setattr(LLMMixin, "get_llm", lambda self: model)
        return model

    yield install


class FailingFakeChatModel(RecordingFakeChatModel):
    """Streams ``fail_after`` chunks of its reply, then raises (0: fails before the first token)."""

    fail_after: int = 0

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        for index, chunk in enumerate(super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)):
            if index == self.fail_after:
                raise RuntimeError("secret internal failure detail")
            yield chunk


class SlowFakeChatModel(RecordingFakeChatModel):
    """Streams its reply with ``delay`` seconds between chunks (natively async, cancellable)."""

    delay: float = 0.05

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        import asyncio

        for chunk in self._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
            yield chunk
            await asyncio.sleep(self.delay)


class HangingFakeChatModel(RecordingFakeChatModel):
    """Streams ``hang_after`` chunks of its reply, then never sends another token."""

    hang_after: int = 0

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        import asyncio

        for index, chunk in enumerate(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs)):
            if index == self.hang_after:
                await asyncio.Event().wait()
            yield chunk


class ToolCallingFakeChatModel(RecordingFakeChatModel):
    """Answers ``messages`` in order, streamed by ``tests.fake_models.reply_chunks``: an
    AIMessage with ``tool_calls`` as tool-call chunks, its usage last. ``bind_tools`` records the
    tools (``bound_tools``) and returns the model itself."""

    bound_tools: list = []

    def bind_tools(self, tools, **kwargs):
        self.bound_tools = [tool.name for tool in tools]
        return self

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls.append(list(messages))
        yield from reply_chunks(next(self.messages))


def tool_calls_then(*steps) -> ToolCallingFakeChatModel:
    """``steps``: lists of (name, args) tool calls, or a final answer (a string, or an
    ``AIMessage`` whose ``usage_metadata`` replaces the default 10 input / 5 output tokens)."""
    messages = []
    for number, step in enumerate(steps):
        if isinstance(step, AIMessage):
            messages.append(step)
        elif isinstance(step, str):
            messages.append(AIMessage(content=step))
        else:
            calls = [{"name": name, "args": args, "id": f"call_{number}_{i}"} for i, (name, args) in enumerate(step)]
            messages.append(AIMessage(content="", tool_calls=calls))
    return ToolCallingFakeChatModel(messages=iter(messages), calls=[])
