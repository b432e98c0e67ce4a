"""One long-lived thread for the database work of sync code that runs in short-lived threads.

Django opens a database connection per thread. LangGraph's sync API (``graph.invoke``) saves
checkpoints from the threads of a pool it creates for every call, so a checkpointer using the
ORM there would open (and leak until garbage collection) a connection per call: about 4 ms a
save on PostgreSQL (bench/results/checkpointer.md). ``run`` sends such work to one thread of
pyhub_ai's own, whose connections live on, as Django's async ORM does with asgiref's thread.

Work called from the main thread, or inside a transaction (``atomic``), runs where it is
called, so it is part of that transaction.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DatabaseError, connections

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def run(alias: str, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)``: here when the calling thread is the main thread or is in a transaction
    on ``alias``, else in pyhub_ai's database thread."""
    if threading.current_thread() is threading.main_thread() or _in_transaction(alias):
        return work(*args)
    return _get_executor().submit(_job, work, args).result()


def close_connections() -> None:
    """Close the database connections of the database thread (tests call it before the test
    database is dropped; a later ``run`` opens new ones)."""
    if _executor is not None:
        _executor.submit(connections.close_all).result()


def _in_transaction(alias: str) -> bool:
    """Whether this thread is in a transaction on ``alias`` (without setting up a connection
    for a thread that has none: a new pool thread has none)."""
    return any(connection.alias == alias and connection.in_atomic_block for connection in connections.all(initialized_only=True))


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyhub_ai-database")
        return _executor


def _job(work: Callable[..., T], args: tuple[Any, ...]) -> T:
    try:
        return work(*args)
    except DatabaseError:
        # A connection that failed (a restarted server, say) is not reused by the next job.
        for connection in connections.all(initialized_only=True):
            connection.close_if_unusable_or_obsolete()
        raise
