"""pyhub_ai's hand-written statements (``statements``), run straight on the DB-API connection.

Django's cursor wraps every statement in several layers (the cursor wrapper, query logging,
``execute_wrapper`` hooks, ``%s`` to ``?`` on SQLite): about 7 µs a statement on SQLite and
12 µs of CPU on PostgreSQL here, against 1 µs and a few µs for the DB-API cursor (measured
2026-11-30). A chat turn runs about a dozen of these statements on the database thread that
every websocket of a process shares, and a LangGraph checkpoint put on SQLite is a handful of
statements that SQLite itself runs in microseconds.

So ``execute`` runs a statement on the connection's own DB-API cursor, with what Django checks
before every statement kept (health check, thread sharing, a transaction broken by an earlier
error) and errors still turned into Django's (``wrap_database_errors``) - except when someone
watches Django's cursors, who then sees every statement as before:

* query logging (``DEBUG``, django-debug-toolbar, ``CaptureQueriesContext``, ``assertNumQueries``);
* ``connection.execute_wrapper`` hooks;
* a patched ``CursorWrapper.execute`` (APM agents such as Sentry's Django integration), or a
  connection whose ``cursor`` method was replaced (django-debug-toolbar's SQL panel).

Only SQLite and PostgreSQL go direct (other backends translate errors in their cursor class).
``transaction`` is the SQLite transaction of the checkpoint put, begun and ended with plain
``BEGIN`` / ``COMMIT`` statements.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from django.db import transaction as django_transaction
from django.db.backends.utils import CursorWrapper

_DIRECT_VENDORS = ("sqlite", "postgresql")
_UNPATCHED_EXECUTE = ("django.db.backends.utils", "CursorWrapper.execute")
_SQLITE_PLACEHOLDER = re.compile(r"(?<!%)%s")


def watched(connection: Any) -> bool:
    """Whether someone watches ``connection``'s Django cursors (see the module docstring)."""
    execute = CursorWrapper.execute
    return (
        connection.queries_logged
        or bool(connection.execute_wrappers)
        or "cursor" in vars(connection)
        or (getattr(execute, "__module__", None), getattr(execute, "__qualname__", None)) != _UNPATCHED_EXECUTE
    )


def _direct(connection: Any) -> bool:
    return connection.vendor in _DIRECT_VENDORS and not watched(connection)


@contextmanager
def execute(connection: Any, sql: str, params: Sequence[Any]) -> Iterator[Any]:
    """Run ``sql`` (``%s`` placeholders) with ``params`` on ``connection``; yields the cursor
    to read its rows, ``rowcount`` or ``lastrowid``, and closes it afterwards."""
    if not _direct(connection):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            yield cursor
        return
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        if connection.vendor == "sqlite":
            cursor = connection.connection.execute(_sqlite_sql(sql), params)
        else:
            cursor = connection.connection.cursor()
            cursor.execute(sql, params)
        try:
            yield cursor
        finally:
            cursor.close()


@contextmanager
def transaction(connection: Any) -> Iterator[None]:
    """One transaction on ``connection``: on SQLite, begun and ended with plain ``BEGIN`` (in
    Django's ``transaction_mode``) and ``COMMIT`` when ``execute`` goes direct, and nothing
    else happens in it (``transaction.atomic``'s bookkeeping was 0.03 ms of a 0.35 ms
    checkpoint put); otherwise, or inside the caller's transaction, ``transaction.atomic``."""
    if connection.vendor != "sqlite" or connection.in_atomic_block or not connection.get_autocommit() or not _direct(connection):
        with django_transaction.atomic(using=connection.alias):
            yield
        return
    connection.ensure_connection()
    raw = connection.connection
    mode = getattr(connection, "transaction_mode", None)
    with connection.wrap_database_errors:
        raw.execute(f"BEGIN {mode}" if mode else "BEGIN")
        try:
            yield
            raw.execute("COMMIT")  # checks the deferred foreign keys: can fail, and then the transaction stays open
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise


@cache
def _sqlite_sql(sql: str) -> str:
    """``sql`` as Django's SQLite cursor would run it: ``?`` placeholders, ``%%`` as ``%``."""
    return _SQLITE_PLACEHOLDER.sub("?", sql).replace("%%", "%")
