"""Long-lived database connections for the sync code that runs in short-lived threads.

Django opens a database connection per thread. LangGraph's sync API (``graph.invoke``) saves
checkpoints from the threads of a pool it creates for every call, so a checkpointer using the
ORM there would open (and leak until garbage collection) a connection per call: about 4 ms a
save on PostgreSQL (bench/results/checkpointer.md). ``run`` lends such a thread a set of
pyhub_ai's own connections (one per database alias, kept open) for the length of the call: the
work runs in the calling thread, without the cost of handing it to another thread and waking
the caller up again (about 0.2 ms a call in a graph turn), and the connections live on, as
Django's async ORM does with asgiref's thread.

A set is lent to one thread at a time. There are up to ``MAX_SETS`` sets, so a checkpoint and
a task's writes (LangGraph saves them from different threads) are stored side by side; one set
only when a database is SQLite, which lets one writer in at a time anyway (a second one would
wait in SQLite's busy handler instead of on a lock).

Work called from the main thread, or inside a transaction (``atomic``), uses the calling
thread's own connections, so it is part of that transaction.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DatabaseError, connections

T = TypeVar("T")

#: How many sets of connections may be lent at once (1 when a database is SQLite).
MAX_SETS = 4

#: Sets of lent connections (alias -> ``DatabaseWrapper``) that no thread holds.
_idle: list[dict[str, Any]] = []
#: Every set made (``close_connections`` closes them all).
_sets: list[dict[str, Any]] = []
_available = threading.Condition()
#: The set the current thread holds, so a nested ``run`` uses it again.
_held = threading.local()


def run(alias: str, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` in the calling thread: on its own connections when it is the main thread
    or is in a transaction on ``alias``, else on a set of pyhub_ai's lent ones."""
    if threading.current_thread() is threading.main_thread() or getattr(_held, "set", None) is not None:
        return work(*args)
    own = {connection.alias: connection for connection in connections.all(initialized_only=True)}
    if alias in own and own[alias].in_atomic_block:
        return work(*args)
    lent = _take()
    _held.set = lent
    for name in connections:
        connections[name] = _wrapper(lent, name)
    try:
        return work(*args)
    except DatabaseError:
        # A connection that failed (a restarted server, say) is not reused by the next call.
        for wrapper in lent.values():
            wrapper.close_if_unusable_or_obsolete()
        raise
    finally:
        for name in connections:
            if name in own:
                connections[name] = own[name]
            else:
                del connections[name]
        _held.set = None
        _give_back(lent)


def close_connections() -> None:
    """Close every lent connection (tests call it before the test database is dropped; a later
    ``run`` opens new ones)."""
    with _available:
        for lent in _sets:
            for wrapper in lent.values():
                wrapper.close()


def _take() -> dict[str, Any]:
    """An idle set of connections, a new one while there are fewer than the limit, or the
    next one given back."""
    with _available:
        while not _idle and len(_sets) >= _max_sets():
            _available.wait()
        if _idle:
            return _idle.pop()
        lent: dict[str, Any] = {}
        _sets.append(lent)
        return lent


def _give_back(lent: dict[str, Any]) -> None:
    with _available:
        _idle.append(lent)
        _available.notify()


def _max_sets() -> int:
    """``MAX_SETS``, or 1 when a configured database is SQLite."""
    if any(settings["ENGINE"].endswith("sqlite3") for settings in connections.settings.values()):
        return 1
    return MAX_SETS


def _wrapper(lent: dict[str, Any], alias: str) -> Any:
    """The lent set's connection of ``alias``: a ``DatabaseWrapper`` of its own, allowed to be
    used from any thread (one at a time: the set is lent to one thread)."""
    wrapper = lent.get(alias)
    if wrapper is None:
        wrapper = lent[alias] = connections.create_connection(alias)
        wrapper.inc_thread_sharing()
    return wrapper
