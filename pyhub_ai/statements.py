"""Plain SQL for the few statements every chat turn runs.

Building a statement with Django's ORM costs about 0.15 ms of Python here, more than SQLite
takes to run it, and a turn runs several of them on the one database thread that every
websocket of a process shares (bench/results/load.md). These are written out by hand instead:
standard SQL on pyhub_ai's own tables, with the table and column names from the models'
``_meta`` quoted by the connection, values prepared by the model fields (``get_db_prep_save``)
and read back by them (``from_db_value``), on the database the ORM would use (the router's
``db_for_read`` / ``db_for_write``). Every other query goes through the ORM.

All functions are synchronous: they run in the database calls of ``locks`` and ``history``.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connections, router
from django.db.models import Model

from .models import Conversation, ConversationMessage, ThreadLock


class _Table:
    """A model's quoted table and column names on one database, and its field conversions."""

    def __init__(self, model: type[Model], alias: str) -> None:
        self.alias = alias
        quote = connections[alias].ops.quote_name
        self.name = quote(model._meta.db_table)
        self.fields = {field.name: field for field in model._meta.concrete_fields}
        self.column = {name: quote(field.column) for name, field in self.fields.items()}

    @property
    def connection(self):
        """This thread's connection (Django's connections are per thread)."""
        return connections[self.alias]

    def prep(self, name: str, value: Any) -> Any:
        return self.fields[name].get_db_prep_save(value, self.connection)

    def read(self, name: str, value: Any) -> Any:
        field = self.fields[name]
        return field.from_db_value(value, None, self.connection) if hasattr(field, "from_db_value") else value

    def select(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        """Run a SELECT; its rows."""
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()]

    def update(self, sql: str, params: Sequence[Any]) -> int:
        """Run an UPDATE; how many rows it changed."""
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount


@cache
def _table(model: type[Model], alias: str) -> _Table:
    return _Table(model, alias)


def _for_read(model: type[Model]) -> _Table:
    return _table(model, router.db_for_read(model))


def _for_write(model: type[Model]) -> _Table:
    return _table(model, router.db_for_write(model))


# -- Thread locks (pyhub_ai.locks) -------------------------------------------------------------


def update_lock(key: str, token: str, *, new_token: str, expires_at: datetime) -> bool:
    """Give the lock row ``key`` that ``token`` holds to ``new_token`` until ``expires_at``
    (take a released lock, renew or release a held one); whether the row was there."""
    t = _for_write(ThreadLock)
    c = t.column
    sql = f"UPDATE {t.name} SET {c['token']} = %s, {c['expires_at']} = %s WHERE {c['key']} = %s AND {c['token']} = %s"
    return t.update(sql, [new_token, t.prep("expires_at", expires_at), key, token]) > 0


# -- Messages (pyhub_ai.history) ----------------------------------------------------------------


@cache
def _window_sql(t: _Table, *, anonymous: bool, complete_only: bool, limited: bool) -> str:
    c = t.column
    where = [f"{c['conversation']} = %s", f"{c['user']} IS NULL" if anonymous else f"{c['user']} = %s", f"{c['visitor_key']} = %s"]
    if complete_only:
        where.append(f"{c['status']} = %s")
    sql = f"SELECT {c['id']}, {c['token_count']} FROM {t.name} WHERE {' AND '.join(where)} ORDER BY {c['id']} DESC"
    return sql + " LIMIT %s" if limited else sql


def window_ids(
    conversation_id: Any, user_id: Any, visitor_key: str, *, complete_only: bool, limit: int | None
) -> list[tuple[int, int]]:
    """``(id, token_count)`` of a thread's newest rows (``complete`` ones only, if asked), newest first."""
    t = _for_read(ConversationMessage)
    sql = _window_sql(t, anonymous=user_id is None, complete_only=complete_only, limited=limit is not None)
    params = [conversation_id, *([] if user_id is None else [user_id]), visitor_key]
    params += [ConversationMessage.Status.COMPLETE] if complete_only else []
    params += [limit] if limit is not None else []
    return t.select(sql, params)


def message_contents(ids: Sequence[int]) -> list[tuple[int, Any, str]]:
    """``(id, content, status)`` of the rows ``ids`` (the stored JSON, as the field reads it)."""
    t = _for_read(ConversationMessage)
    c = t.column
    placeholders = ", ".join(["%s"] * len(ids))
    sql = f"SELECT {c['id']}, {c['content']}, {c['status']} FROM {t.name} WHERE {c['id']} IN ({placeholders})"
    return [(pk, t.read("content", content), status) for pk, content, status in t.select(sql, list(ids))]


def update_message(pk: int, *, content: Any, status: str, token_count: int) -> None:
    """Store a reply's content, status and token count in its row."""
    t = _for_write(ConversationMessage)
    c = t.column
    sql = f"UPDATE {t.name} SET {c['content']} = %s, {c['status']} = %s, {c['token_count']} = %s WHERE {c['id']} = %s"
    t.update(sql, [t.prep("content", content), status, token_count, pk])


def add_conversation_activity(pk: Any, *, input_tokens: int, output_tokens: int, updated_at: datetime, expires_at: datetime | None = None) -> None:
    """Add a reply's token usage to its conversation's totals and set its activity times."""
    t = _for_write(Conversation)
    c = t.column
    sets = [
        f"{c['input_tokens']} = {c['input_tokens']} + %s",
        f"{c['output_tokens']} = {c['output_tokens']} + %s",
        f"{c['updated_at']} = %s",
    ]
    params = [input_tokens, output_tokens, t.prep("updated_at", updated_at)]
    if expires_at is not None:
        sets.append(f"{c['expires_at']} = %s")
        params.append(t.prep("expires_at", expires_at))
    t.update(f"UPDATE {t.name} SET {', '.join(sets)} WHERE {c['id']} = %s", [*params, pk])
