"""One turn at a time per conversation thread, across tabs, processes and machines.

A turn holds a lease: a ``ThreadLock`` row keyed by the thread, taken with one query (an
UPDATE of the thread's released row; an INSERT the first time; an UPDATE of an expired lease
left by a dead worker) and released with one UPDATE. It works the same on SQLite and
PostgreSQL, needs no open transaction while the model streams, and a worker killed mid-turn
only blocks its thread until the lease expires. While a turn runs, the lease is renewed.

A turn's first and last database work share a database call with taking and releasing the
lease: ``thread_lock(on_acquire=...)`` runs the first work right after the lease is taken, and
``release()`` can run inside the transaction that stores the reply (``Lease.released`` then
tells ``thread_lock`` there is nothing left to release).
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import statements
from .conf import conf
from .models import ThreadLock

logger = logging.getLogger("pyhub_ai.locks")

#: The token of a released lock.
RELEASED = ""


class ThreadBusy(Exception):
    """Another turn of the same thread kept the lock for longer than the wait allowed."""


@dataclass
class Lease:
    """A thread's lock as one turn holds it.

    ``took_over``: the previous holder died mid-turn (its lease expired). ``value``: what
    ``on_acquire`` returned. ``released``: the lock was released already.
    """

    key: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    took_over: bool = False
    released: bool = False
    value: Any = None


def thread_key(conversation_id: object, user_id: object, visitor_key: str) -> str:
    return f"{conversation_id}:{user_id or ''}:{visitor_key}"


def _lease_duration() -> timedelta:
    """How long a lease lasts without renewal (``PYHUB_AI_TURN_LOCK_LEASE``); renewed every third of it."""
    return timedelta(seconds=conf.TURN_LOCK_LEASE)


async def is_locked(key: str) -> bool:
    """Whether a live turn holds the thread (a lease that has not expired)."""
    return await ThreadLock.objects.filter(key=key, expires_at__gt=timezone.now()).aexists()


def acquire(lease: Lease) -> bool:
    """Take the lock for ``lease`` if it is free or its holder's lease expired (sets
    ``lease.took_over``); ``False`` if a live turn holds it. Synchronous."""
    now = timezone.now()
    expires_at = now + _lease_duration()
    if statements.update_lock(lease.key, RELEASED, new_token=lease.token, expires_at=expires_at):
        return True
    try:
        with transaction.atomic():  # the thread's first turn; a savepoint in a transaction
            ThreadLock.objects.create(key=lease.key, token=lease.token, expires_at=expires_at)
        return True
    except IntegrityError:
        expired = ThreadLock.objects.filter(key=lease.key, expires_at__lt=now).exclude(token=RELEASED)
        lease.took_over = bool(expired.update(token=lease.token, expires_at=expires_at))
        return lease.took_over


def release(lease: Lease) -> None:
    """Release the lock ``lease`` holds (nothing if another holder took it over). Synchronous;
    inside a transaction, ``lease.released`` is set once it commits."""
    statements.update_lock(lease.key, lease.token, new_token=RELEASED, expires_at=timezone.now())
    transaction.on_commit(lambda: setattr(lease, "released", True))


def _acquire_then(lease: Lease, on_acquire: Callable[[Lease], Any] | None) -> bool:
    """Acquire, then run ``on_acquire(lease)``, in one transaction: if it raises, the lock was
    never taken."""
    with transaction.atomic():
        if not acquire(lease):
            return False
        if on_acquire is not None:
            lease.value = on_acquire(lease)
    return True


def renew(lease: Lease) -> None:
    """Extend the lease by another ``PYHUB_AI_TURN_LOCK_LEASE`` seconds. Synchronous."""
    statements.update_lock(lease.key, lease.token, new_token=lease.token, expires_at=timezone.now() + _lease_duration())


_try_acquire = sync_to_async(_acquire_then)
_release = sync_to_async(release)
_arenew = sync_to_async(renew)


class _Renewal:
    """Renews a held lease every third of ``PYHUB_AI_TURN_LOCK_LEASE`` until ``cancel()``.

    Started by ``thread_lock`` for every turn. Most turns end long before their first renewal,
    so what waits is a timer, not a task: a task per turn (created, stepped, cancelled, stepped
    again) was about 3 % of the event loop's profiled time of a 10-token turn (cProfile of
    daphne in the production benchmark, 2026-11-30). A renewal's query runs in a task of its
    own when it is due. A renewal that fails stops the renewals (the lease then expires, as a
    dead worker's does) and is logged."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.interval = _lease_duration().total_seconds() / 3
        self.loop = asyncio.get_running_loop()
        self.task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = self.loop.call_later(self.interval, self._due)

    def _due(self) -> None:
        self.timer = None
        self.task = self.loop.create_task(self._renew())

    async def _renew(self) -> None:
        try:
            await _arenew(self.lease)
        except Exception:
            logger.exception("Could not renew the lock of thread %s; it expires within %s s.", self.lease.key, conf.TURN_LOCK_LEASE)
            return
        self.task = None
        self.timer = self.loop.call_later(self.interval, self._due)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()
            self.task = None


@asynccontextmanager
async def thread_lock(
    key: str, wait: float, on_acquire: Callable[[Lease], Any] | None = None
) -> AsyncIterator[Lease]:
    """Hold the thread's lock for the body; wait up to ``wait`` seconds, else ``ThreadBusy``.

    ``on_acquire(lease)`` (synchronous) runs in the transaction that takes the lock; its
    result is ``lease.value``. If it raises, nothing of that transaction is kept, and the
    exception propagates from the ``async with``. The lock is released when the body ends,
    unless the body did it.
    """
    lease = Lease(key)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    pause = 0.02
    try:
        while not await _try_acquire(lease, on_acquire):
            if loop.time() >= deadline:
                raise ThreadBusy(key)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
    except asyncio.CancelledError:
        # Cancelled while a query that may take the lock was running: release what we may hold
        # (the release queues behind that query on the database thread).
        await asyncio.shield(_release(lease))
        raise
    renewal = _Renewal(lease)
    try:
        yield lease
    finally:
        renewal.cancel()
        if not lease.released:
            await asyncio.shield(_release(lease))
