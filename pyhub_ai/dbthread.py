"""Long-lived database connections for the sync code that runs in short-lived threads.

Django opens a database connection per thread. LangGraph's sync API (``graph.invoke``) saves
checkpoints from the threads of a pool it creates for every call, so a checkpointer using the
ORM there would open (and leak until garbage collection) a connection per call: about 4 ms a
save on PostgreSQL (bench/results/checkpointer.md). ``run`` lends such a thread pyhub_ai's own
set of connections (one per database alias, kept open), one thread at a time, for the length of
the call: the work runs in the calling thread, without the cost of handing it to another thread
and waking the caller up again (about 0.2 ms a call in a graph turn, where other threads hold
the GIL), and the connections live on, as Django's async ORM does with asgiref's thread.

Work called from the main thread, or inside a transaction (``atomic``), uses the calling
thread's own connections, so it is part of that transaction.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DatabaseError, connections

T = TypeVar("T")

#: The lent connections, per alias (created on first use; see ``_borrowed``).
_connections: dict[str, Any] = {}
#: Held by the thread the connections are lent to; reentrant, so a nested ``run`` works.
_lock = threading.RLock()


def run(alias: str, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` in the calling thread: on its own connections when it is the main thread
    or is in a transaction on ``alias``, else on pyhub_ai's lent ones."""
    if threading.current_thread() is threading.main_thread() or _in_transaction(alias):
        return work(*args)
    with _lock:
        own = {connection.alias: connection for connection in connections.all(initialized_only=True)}
        if any(own.get(name) is lent for name, lent in _connections.items()):
            return work(*args)  # a nested call: this thread holds the lent connections already
        for name in connections:
            connections[name] = _borrowed(name)
        try:
            return work(*args)
        except DatabaseError:
            # A connection that failed (a restarted server, say) is not reused by the next call.
            for lent in _connections.values():
                lent.close_if_unusable_or_obsolete()
            raise
        finally:
            for name in connections:
                if name in own:
                    connections[name] = own[name]
                else:
                    del connections[name]


def close_connections() -> None:
    """Close the lent connections (tests call it before the test database is dropped; a later
    ``run`` opens new ones)."""
    with _lock:
        for lent in _connections.values():
            lent.close()


def _borrowed(alias: str) -> Any:
    """The lent connection of ``alias``: a ``DatabaseWrapper`` of its own, allowed to be used
    from any thread (one at a time: ``run`` holds the lock)."""
    lent = _connections.get(alias)
    if lent is None:
        lent = _connections[alias] = connections.create_connection(alias)
        lent.inc_thread_sharing()
    return lent


def _in_transaction(alias: str) -> bool:
    """Whether this thread is in a transaction on ``alias`` (without setting up a connection
    for a thread that has none: a new pool thread has none)."""
    return any(connection.alias == alias and connection.in_atomic_block for connection in connections.all(initialized_only=True))
