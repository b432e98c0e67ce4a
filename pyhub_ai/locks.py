"""One turn at a time per conversation thread, across tabs, processes and machines.

A turn holds a lease: a ``ThreadLock`` row keyed by the thread, taken with one query (an
UPDATE of the thread's released row; an INSERT the first time; an UPDATE of an expired lease
left by a dead worker) and released with one UPDATE when the turn ends. It works the same on SQLite and
PostgreSQL, needs no open transaction while the model streams, and a worker killed mid-turn
only blocks its thread until the lease expires. While a turn runs, the lease is renewed.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError
from django.utils import timezone

from .conf import conf
from .models import ThreadLock


def _lease() -> timedelta:
    """How long a lease lasts without renewal (``PYHUB_AI_TURN_LOCK_LEASE``); renewed every third of it."""
    return timedelta(seconds=conf.TURN_LOCK_LEASE)


class ThreadBusy(Exception):
    """Another turn of the same thread kept the lock for longer than the wait allowed."""


def thread_key(conversation_id: object, user_id: object, visitor_key: str) -> str:
    return f"{conversation_id}:{user_id or ''}:{visitor_key}"


async def is_locked(key: str) -> bool:
    """Whether a live turn holds the thread (a lease that has not expired)."""
    return await ThreadLock.objects.filter(key=key, expires_at__gt=timezone.now()).aexists()


#: The token of a released lock.
RELEASED = ""


async def _try_acquire(key: str, token: str) -> Acquired | None:
    now = timezone.now()
    held = {"token": token, "expires_at": now + _lease()}
    if await ThreadLock.objects.filter(key=key, token=RELEASED).aupdate(**held):
        return Acquired(took_over=False)
    try:
        await ThreadLock.objects.acreate(key=key, **held)
        return Acquired(took_over=False)
    except IntegrityError:
        expired = ThreadLock.objects.filter(key=key, expires_at__lt=now).exclude(token=RELEASED)
        return Acquired(took_over=True) if await expired.aupdate(**held) else None


async def _renew(key: str, token: str) -> None:
    while True:
        await asyncio.sleep(_lease().total_seconds() / 3)
        await ThreadLock.objects.filter(key=key, token=token).aupdate(expires_at=timezone.now() + _lease())


@dataclass(frozen=True)
class Acquired:
    """A held lock; ``took_over`` says the previous holder died (its lease expired) mid-turn."""

    took_over: bool


@asynccontextmanager
async def thread_lock(key: str, wait: float) -> AsyncIterator[Acquired]:
    """Hold the thread's lock for the body; wait up to ``wait`` seconds, else ``ThreadBusy``."""
    token = uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    pause = 0.02
    try:
        while (acquired := await _try_acquire(key, token)) is None:
            if loop.time() >= deadline:
                raise ThreadBusy(key)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
    except asyncio.CancelledError:
        # Cancelled while a query that may take the lock was running: release what we may hold
        # (the release queues behind that query on the database thread).
        await asyncio.shield(_release(key, token))
        raise
    renewal = asyncio.create_task(_renew(key, token))
    try:
        yield acquired
    finally:
        renewal.cancel()
        await asyncio.shield(_release(key, token))


async def _release(key: str, token: str) -> None:
    await ThreadLock.objects.filter(key=key, token=token).aupdate(token=RELEASED, expires_at=timezone.now())
