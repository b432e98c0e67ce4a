"""Plain SQL for the few statements every chat turn runs.

Building a statement with Django's ORM costs about 0.15 ms of Python here, more than SQLite
takes to run it, and a turn runs several of them on the one database thread that every
websocket of a process shares (bench/results/load.md). These are written out by hand instead:
standard SQL on pyhub_ai's own tables, with the table and column names from the models'
``_meta`` quoted by the connection, values prepared by the model fields (``get_db_prep_save``)
and read back by them (``from_db_value``), on the database the ORM would use (the router's
``db_for_read`` / ``db_for_write``), on the DB-API cursor unless someone watches Django's
cursors (``direct_sql``). Every other query goes through the ORM.

All functions are synchronous: they run in the database calls of ``locks`` and ``history``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connections, router
from django.db.models import Model

from . import direct_sql
from .models import Checkpoint, CheckpointBlob, CheckpointWrite, Conversation, ConversationMessage, ThreadBranch, ThreadLock, UsageRecord, UsageTotal


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
        with direct_sql.execute(self.connection, sql, params) as cursor:
            return [tuple(row) for row in cursor.fetchall()]

    def update(self, sql: str, params: Sequence[Any]) -> int:
        """Run an UPDATE (or another statement); how many rows it changed."""
        with direct_sql.execute(self.connection, sql, params) as cursor:
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


# -- Conversations (pyhub_ai.mixins.conversation) ----------------------------------------------


@cache
def _row_reader(t: _Table, model: type[Model]) -> tuple[str, list[str], list[tuple[int, list[Any], Any]]]:
    """The SELECT of a row of ``model`` by primary key, its fields' ``attname`` and the
    converters the ORM applies to each column (the database's, then the field's): what
    ``SQLCompiler.get_converters`` finds, found once (they depend on the database, not the
    thread's connection)."""
    fields = list(model._meta.concrete_fields)
    connection = t.connection
    converters = []
    for index, field in enumerate(fields):
        col = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if found:
            converters.append((index, found, col))
    columns = ", ".join(t.column[field.name] for field in fields)
    sql = f"SELECT {columns} FROM {t.name} WHERE {t.column[model._meta.pk.name]} = %s"
    return sql, [field.attname for field in fields], converters


def conversation(pk: Any) -> Conversation | None:
    """The conversation ``pk`` as ``Conversation.objects.get(pk=pk)`` reads it, or ``None``;
    ``ValueError`` for a ``pk`` that is no id. Without building a query: 0.15 ms of the
    database thread's time with the ORM, 0.02 ms here (SQLite, measured 2026-11-29); the chat
    consumer reads it for every client frame (``ConversationMixin.aget_conversation``, or
    ``conversation_refusal`` in the call that starts a turn)."""
    t = _for_read(Conversation)
    sql, names, converters = _row_reader(t, Conversation)
    value = t.prep("id", pk)
    low, high = t.connection.ops.integer_field_range(Conversation._meta.pk.get_internal_type())
    if (low is not None and value < low) or (high is not None and value > high):
        return None  # no row can have it (the ORM's lookup matches nothing too)
    rows = t.select(sql, [value])
    if not rows:
        return None
    values = list(rows[0])
    connection = t.connection
    for index, found, col in converters:
        for converter in found:
            values[index] = converter(values[index], col, connection)
    return Conversation.from_db(t.alias, names, values)


# -- Messages (pyhub_ai.history) ----------------------------------------------------------------


@cache
def _window_sql(
    t: _Table, *, anonymous: bool, complete_only: bool, limited: bool, columns: tuple[str, ...] = ("id", "token_count")
) -> str:
    c = t.column
    where = [f"{c['conversation']} = %s", f"{c['user']} IS NULL" if anonymous else f"{c['user']} = %s", f"{c['visitor_key']} = %s"]
    if complete_only:
        where.append(f"{c['status']} = %s")
    sql = f"SELECT {', '.join(c[name] for name in columns)} FROM {t.name} WHERE {' AND '.join(where)} ORDER BY {c['id']} DESC"
    return sql + " LIMIT %s" if limited else sql


def window_ids(
    conversation_id: Any, user_id: Any, visitor_key: str, *, complete_only: bool, limit: int | None
) -> list[tuple[int, int]]:
    """``(id, token_count)`` of a thread's newest rows (``complete`` ones only, if asked), newest first."""
    t = _for_read(ConversationMessage)
    sql = _window_sql(t, anonymous=user_id is None, complete_only=complete_only, limited=limit is not None)
    return t.select(sql, _window_params(conversation_id, user_id, visitor_key, complete_only, limit))


def window_rows(
    conversation_id: Any, user_id: Any, visitor_key: str, *, complete_only: bool, limit: int | None
) -> list[tuple[int, int, Any, str]]:
    """``(id, token_count, content, status)`` of the rows ``window_ids()`` finds (the stored
    JSON as the field reads it), newest first: a history's first read of its window."""
    t = _for_read(ConversationMessage)
    columns = ("id", "token_count", "content", "status")
    sql = _window_sql(t, anonymous=user_id is None, complete_only=complete_only, limited=limit is not None, columns=columns)
    rows = t.select(sql, _window_params(conversation_id, user_id, visitor_key, complete_only, limit))
    return [(pk, tokens, t.read("content", content), status) for pk, tokens, content, status in rows]


def _window_params(conversation_id: Any, user_id: Any, visitor_key: str, complete_only: bool, limit: int | None) -> list[Any]:
    params = [conversation_id, *([] if user_id is None else [user_id]), visitor_key]
    params += [ConversationMessage.Status.COMPLETE] if complete_only else []
    return params + ([limit] if limit is not None else [])


#: How each database joins a column of rows into one string (``thread_window``); other
#: databases read the window row by row (``thread_branch`` + ``window_ids``).
_STRING_AGG = {"sqlite": "group_concat({}, ';')", "postgresql": "string_agg({}, ';')"}


@cache
def _thread_window_sql(m: _Table, b: _Table, *, anonymous: bool, complete_only: bool, limited: bool) -> str:
    c = m.column
    pair = f"CAST(w.{c['id']} AS TEXT) || ',' || CAST(w.{c['token_count']} AS TEXT)"
    window = _window_sql(m, anonymous=anonymous, complete_only=complete_only, limited=limited)
    newest = f"SELECT {c['id']} FROM {m.name} WHERE {_thread_where(m, None if anonymous else 0)} ORDER BY {c['id']} DESC LIMIT 1"
    return (
        f"SELECT br.{b.column['leaf']}, br.{b.column['newest']}, "
        f"CASE WHEN br.{b.column['leaf']} IS NULL THEN NULL ELSE ({newest}) END, "
        f"(SELECT {_STRING_AGG[m.connection.vendor].format(pair)} FROM ({window}) w) "
        f"FROM (SELECT 1 AS one) o LEFT JOIN {b.name} br ON br.{b.column['key']} = %s"
    )


def thread_window(
    key: str, conversation_id: Any, user_id: Any, visitor_key: str, *, complete_only: bool, limit: int | None
) -> tuple[tuple[int, int, int | None] | None, list[tuple[int, int]]] | None:
    """``thread_branch()`` and ``window_ids()`` in one statement that returns one row (SQLite
    steps a query row by row, handing the interpreter lock to the event loop's thread at each
    row: 50 rows cost the database thread about 0.2 ms more than one row while the loop is
    busy, measured 2026-11-29). ``None`` on a database that cannot join them into one row."""
    m, b = _for_read(ConversationMessage), _for_read(ThreadBranch)
    if m.connection.vendor not in _STRING_AGG or m.alias != b.alias:
        return None
    sql = _thread_window_sql(m, b, anonymous=user_id is None, complete_only=complete_only, limited=limit is not None)
    thread = _thread_params(conversation_id, user_id, visitor_key)
    params = [*thread, *thread, *([ConversationMessage.Status.COMPLETE] if complete_only else []), *([limit] if limit is not None else []), key]
    leaf, newest_then, newest_now, joined = m.select(sql, params)[0]
    numbers = iter(map(int, joined.replace(";", ",").split(","))) if joined else iter(())
    pairs = sorted(zip(numbers, numbers), reverse=True)  # newest first (the aggregate's order is not guaranteed)
    return (None if leaf is None else (leaf, newest_then, newest_now)), pairs


def insert_messages(
    rows: Sequence[ConversationMessage], *, using: str | None = None, skip_duplicates: bool = False
) -> list[int] | None:
    """Insert ``rows`` in one statement on ``using`` (default: the router's database for
    writing messages) and give them their ids, as ``bulk_create`` does (the fields'
    ``pre_save``, then ``get_db_prep_save``): 0.17 ms of the database thread's time for a turn's
    two rows with ``bulk_create``, 0.10 ms here (SQLite, measured 2026-11-29); ``bulk_create``
    itself on a database that cannot return the ids. Returns the ids inserted. Called for a
    turn's rows (``history.start_turn``) and a checkpoint's new messages
    (``checkpoint_messages.store``, ``DjangoSaver.put``).

    ``skip_duplicates``: a row that would break a unique constraint (a message whose idempotency
    key the thread has already) is left out instead of failing the statement, so the caller's
    transaction needs no savepoint; then fewer ids come back than rows were given, and no row
    gets an id (the caller removes what was inserted). ``None`` (nothing inserted) when the
    database cannot do this: the caller inserts within a savepoint instead."""
    t = _for_write(ConversationMessage) if using is None else _table(ConversationMessage, using)
    connection = t.connection
    if not rows:
        return []
    if not connection.features.can_return_rows_from_bulk_insert:
        if skip_duplicates:
            return None
        ConversationMessage.objects.using(t.alias).bulk_create(rows)
        return [row.pk for row in rows]
    fields = _insert_fields(t)
    params = [field.get_db_prep_save(field.pre_save(row, True), connection) for row in rows for field in fields]
    if len(rows) == 1 and not skip_duplicates and connection.vendor == "sqlite":
        # One row: its id without RETURNING, so SQLite steps the statement once instead of twice.
        with direct_sql.execute(connection, _insert_messages_sql(t, 1, False, returning=False), params) as cursor:
            ids = [cursor.lastrowid]
    else:
        ids = [pk for (pk,) in t.select(_insert_messages_sql(t, len(rows), skip_duplicates), params)]
    if len(ids) == len(rows):
        for row, pk in zip(rows, ids):
            row.pk = pk
            row._state.adding, row._state.db = False, t.alias
    return ids


@cache
def _insert_messages_sql(t: _Table, rows: int, skip_duplicates: bool, returning: bool = True) -> str:
    skip = " ON CONFLICT DO NOTHING" if skip_duplicates else ""
    returned = f" RETURNING {t.column['id']}" if returning else ""
    return _plain_insert_sql(t, [field.name for field in _insert_fields(t)], rows) + skip + returned


def delete_messages(ids: Sequence[int]) -> None:
    """Delete the rows ``ids`` (what ``insert_messages(skip_duplicates=True)`` inserted
    of a turn that turned out to be a duplicate)."""
    t = _for_write(ConversationMessage)
    t.update(f"DELETE FROM {t.name} WHERE {t.column['id']} IN ({', '.join(['%s'] * len(ids))})", list(ids))


def message_contents(ids: Sequence[int]) -> list[tuple[int, Any, str]]:
    """``(id, content, status)`` of the rows ``ids`` (the stored JSON, as the field reads it)."""
    t = _for_read(ConversationMessage)
    c = t.column
    placeholders = ", ".join(["%s"] * len(ids))
    sql = f"SELECT {c['id']}, {c['content']}, {c['status']} FROM {t.name} WHERE {c['id']} IN ({placeholders})"
    return [(pk, t.read("content", content), status) for pk, content, status in t.select(sql, list(ids))]


def _thread_where(t: _Table, user_id: Any, prefix: str = "") -> str:
    c = t.column
    user = f"{prefix}{c['user']} IS NULL" if user_id is None else f"{prefix}{c['user']} = %s"
    return f"{prefix}{c['conversation']} = %s AND {user} AND {prefix}{c['visitor_key']} = %s"


def _thread_params(conversation_id: Any, user_id: Any, visitor_key: str) -> list[Any]:
    return [conversation_id, *([] if user_id is None else [user_id]), visitor_key]


def thread_branch(key: str, conversation_id: Any, user_id: Any, visitor_key: str) -> tuple[int, int, int | None] | None:
    """``(leaf, newest when chosen, newest now)`` of a branched thread, in one query; ``None``
    for a thread that never branched (``pyhub_ai.branches``)."""
    b, m = _for_read(ThreadBranch), _for_read(ConversationMessage)
    newest = f"SELECT {m.column['id']} FROM {m.name} WHERE {_thread_where(m, user_id)} ORDER BY {m.column['id']} DESC LIMIT 1"
    sql = f"SELECT {b.column['leaf']}, {b.column['newest']}, ({newest}) FROM {b.name} WHERE {b.column['key']} = %s"
    rows = b.select(sql, [*_thread_params(conversation_id, user_id, visitor_key), key])
    return rows[0] if rows else None


def thread_newest(conversation_id: Any, user_id: Any, visitor_key: str) -> int | None:
    """The id of a thread's newest message (one step of the thread index)."""
    t = _for_read(ConversationMessage)
    sql = f"SELECT {t.column['id']} FROM {t.name} WHERE {_thread_where(t, user_id)} ORDER BY {t.column['id']} DESC LIMIT 1"
    rows = t.select(sql, _thread_params(conversation_id, user_id, visitor_key))
    return rows[0][0] if rows else None


@cache
def _walk_sql(t: _Table, *, anonymous: bool, counted: str | None, limited: bool) -> str:
    c = t.column
    columns = [c[name] for name in ("id", "parent", "token_count", "status", "visible")]
    head = ", ".join(columns)
    step = ", ".join(f"m.{column}" for column in columns)
    count = (lambda prefix: f"CASE WHEN {prefix}{c[counted]} = %s THEN 1 ELSE 0 END") if counted else (lambda prefix: "1")
    return (
        f"WITH RECURSIVE branch(id, parent_id, token_count, status, visible, kept) AS ("
        f"SELECT {head}, {count('')} FROM {t.name} WHERE {c['id']} = %s AND {_thread_where(t, None if anonymous else 0)} "
        f"UNION ALL SELECT {step}, b.kept + {count('m.')} "
        f"FROM {t.name} m JOIN branch b ON m.{c['id']} = b.parent_id"
        + (" WHERE b.kept < %s" if limited else "")
        + ") SELECT id, token_count, status, visible FROM branch ORDER BY id DESC"
    )


def walk_branch(
    leaf: int, conversation_id: Any, user_id: Any, visitor_key: str, *, counted: str | None = None, value: Any = None,
    limit: int | None = None,
) -> list[tuple[int, int, str, bool]]:
    """``(id, token_count, status, visible)`` of the branch ending at ``leaf``, newest first,
    followed up the ``parent`` links until ``limit`` rows were read whose ``counted`` column
    (``status`` or ``visible``; ``None``: every row) equals ``value`` (the whole branch without
    a limit): one recursive query, one primary-key step per row, whatever the size of the tree."""
    t = _for_read(ConversationMessage)
    sql = _walk_sql(t, anonymous=user_id is None, counted=counted, limited=limit is not None)
    value_params = [t.prep(counted, value)] if counted else []
    params = [*value_params, leaf, *_thread_params(conversation_id, user_id, visitor_key), *value_params]
    params += [limit] if limit is not None else []
    return [(pk, tokens, status, bool(visible)) for pk, tokens, status, visible in t.select(sql, params)]


def newest_descendant(message_id: int) -> int:
    """The end of the newest path below ``message_id``: its newest child, that one's newest
    child, and so on (one indexed step per level)."""
    t = _for_read(ConversationMessage)
    c = t.column
    sql = (
        f"WITH RECURSIVE down(id) AS (SELECT {c['id']} FROM {t.name} WHERE {c['id']} = %s UNION ALL "
        f"SELECT (SELECT MAX(m.{c['id']}) FROM {t.name} m WHERE m.{c['parent']} = down.id) FROM down WHERE down.id IS NOT NULL) "
        f"SELECT MAX(id) FROM down"
    )
    return t.select(sql, [message_id])[0][0]


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



# -- The usage ledger (pyhub_ai.ledger) -----------------------------------------------------------


def insert_usage(record: UsageRecord, subjects: Sequence[str], day: Any) -> None:
    """Insert a model call's ledger row and add it to the ``day`` totals of ``subjects`` (the
    visitor's budget subject and the site), in the caller's transaction: two statements, one on
    PostgreSQL (a data-modifying ``WITH``)."""
    t = _for_write(UsageRecord)
    connection = t.connection  # once: each lookup goes through asgiref's Local
    fields = _insert_fields(t)
    insert = _plain_insert_sql(t, [field.name for field in fields], 1)
    insert_params = [field.get_db_prep_save(getattr(record, field.attname), connection) for field in fields]
    totals = _for_write(UsageTotal)
    tokens, cost, day = record.input_tokens + record.output_tokens, totals.prep("cost", record.cost), totals.prep("day", day)
    subjects = sorted(set(subjects))  # one lock order for every transaction: no deadlock between them
    params = [value for subject in subjects for value in (subject, day, tokens, cost, 1)]
    if connection.vendor == "postgresql" and totals.alias == t.alias:  # one statement, one round trip
        totals.update(f"WITH ledger_row AS ({insert}) {_add_totals_sql(totals, len(subjects))}", [*insert_params, *params])
        return
    t.update(insert, insert_params)
    totals.update(_add_totals_sql(totals, len(subjects)), params)


@cache
def _insert_fields(t: _Table) -> list[Any]:
    """The fields an INSERT of a new row of ``t`` sets (all but the primary key)."""
    return [field for field in t.fields.values() if not field.primary_key]


@cache
def _add_totals_sql(t: _Table, rows: int) -> str:
    c = t.column
    head = _plain_insert_sql(t, ["subject", "day", "tokens", "cost", "calls"], rows)
    sums = ("tokens", "cost", "calls")
    if t.connection.vendor == "mysql":
        return head + " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c[n]} = {c[n]} + VALUES({c[n]})" for n in sums)
    return head + f" ON CONFLICT ({c['subject']}, {c['day']}) DO UPDATE SET " + ", ".join(
        f"{c[n]} = {t.name}.{c[n]} + excluded.{c[n]}" for n in sums
    )


# -- LangGraph checkpoints (pyhub_ai.checkpoint) ------------------------------------------------
#
# A graph turn reads one checkpoint and writes two or three; through the ORM each took 1.2-1.4 ms
# on SQLite, 5x LangGraph's own SqliteSaver (bench/results/checkpointer.md). Written out here,
# with the upserts of SQLite and PostgreSQL (ON CONFLICT) or MySQL/MariaDB.


def _insert_sql(t: _Table, columns: Sequence[str], rows: int, keys: Sequence[str], update: Sequence[str] = ()) -> str:
    """``INSERT`` of ``rows`` rows that skips a row whose ``keys`` exist, or updates its
    ``update`` columns."""
    vendor = t.connection.vendor
    head = _plain_insert_sql(t, columns, rows)
    if vendor in ("sqlite", "postgresql"):
        conflict = f" ON CONFLICT ({', '.join(t.column[name] for name in keys)}) DO "
        if not update:
            return head + conflict + "NOTHING"
        return head + conflict + "UPDATE SET " + ", ".join(f"{t.column[name]} = excluded.{t.column[name]}" for name in update)
    if vendor == "mysql":
        if not update:
            return head.replace("INSERT INTO", "INSERT IGNORE INTO", 1)
        return head + " ON DUPLICATE KEY UPDATE " + ", ".join(f"{t.column[name]} = VALUES({t.column[name]})" for name in update)
    raise NotImplementedError(f"pyhub_ai's LangGraph checkpointer supports SQLite, PostgreSQL and MySQL/MariaDB, not {vendor}.")


def _plain_insert_sql(t: _Table, columns: Sequence[str], rows: int) -> str:
    values = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * rows)
    return f"INSERT INTO {t.name} ({', '.join(t.column[name] for name in columns)}) VALUES {values}"


@cache
def _checkpoint_row_sql(t: _Table, latest: bool) -> str:
    c = t.column
    sql = (
        f"SELECT {c['checkpoint_id']}, {c['parent_checkpoint_id']}, {c['checkpoint']}, {c['metadata']}, {c['message_runs']} "
        f"FROM {t.name} WHERE {c['thread']} = %s AND {c['checkpoint_ns']} = %s"
    )
    return sql + (f" ORDER BY {c['checkpoint_id']} DESC LIMIT 1" if latest else f" AND {c['checkpoint_id']} = %s")


def checkpoint_with_writes(thread_pk: int, ns: str, checkpoint_id: str | None) -> tuple[tuple[str, str, Any, Any, Any], list[tuple]] | None:
    """In one query: ``(checkpoint id, parent checkpoint id, checkpoint, metadata, message
    runs)`` of a thread's checkpoint ``checkpoint_id`` (or of its latest one) and its pending
    writes (``(task_id, channel, type, blob)``, in LangGraph's order: task path, task id,
    index); ``None`` when there is no such checkpoint."""
    t, w = _for_read(Checkpoint), _table(CheckpointWrite, router.db_for_read(Checkpoint))
    params = [thread_pk, ns, *([checkpoint_id] if checkpoint_id else []), thread_pk, ns]
    row, pending = None, []
    for kind, found_id, parent_id, checkpoint, metadata, runs, _, task_id, _, channel, type_, blob in t.select(
        _checkpoint_with_writes_sql(t, w, latest=not checkpoint_id), params
    ):
        if kind == 0:
            row = (found_id, parent_id, t.read("checkpoint", checkpoint), t.read("metadata", metadata), t.read("message_runs", runs))
        else:
            pending.append((task_id, channel, type_, blob))
    return None if row is None else (row, pending)


@cache
def _checkpoint_with_writes_sql(t: _Table, w: _Table, latest: bool) -> str:
    c, wc = t.column, w.column
    connection = t.connection

    def null(table: _Table, name: str) -> str:
        return f"CAST(NULL AS {table.fields[name].db_type(connection)})"

    row = _checkpoint_row_sql(t, latest)
    checkpoint_columns = ", ".join(["checkpoint_id", "parent_checkpoint_id", "checkpoint", "metadata", "message_runs"])
    return (
        f"WITH cp ({checkpoint_columns}) AS ({row}) "
        f"SELECT 0, cp.checkpoint_id, cp.parent_checkpoint_id, cp.checkpoint, cp.metadata, cp.message_runs, "
        f"{null(w, 'task_path')}, {null(w, 'task_id')}, {null(w, 'idx')}, {null(w, 'channel')}, {null(w, 'type')}, {null(w, 'blob')} FROM cp "
        f"UNION ALL SELECT 1, {null(t, 'checkpoint_id')}, {null(t, 'parent_checkpoint_id')}, {null(t, 'checkpoint')}, {null(t, 'metadata')}, "
        f"{null(t, 'message_runs')}, {wc['task_path']}, {wc['task_id']}, {wc['idx']}, {wc['channel']}, {wc['type']}, {wc['blob']} "
        f"FROM {w.name} WHERE {wc['thread']} = %s AND {wc['checkpoint_ns']} = %s AND {wc['checkpoint_id']} = (SELECT checkpoint_id FROM cp) "
        "ORDER BY 1, 7, 8, 9"
    )


def checkpoint_blobs(thread_pk: int, ns: str, versions: dict[str, str]) -> list[tuple]:
    """The stored values of the channel versions ``versions``: ``(channel, version, type, blob)``."""
    if not versions:
        return []
    t = _for_read(CheckpointBlob)
    params = [thread_pk, ns, *(value for pair in versions.items() for value in pair)]
    return t.select(_checkpoint_blobs_sql(t, len(versions)), params)


@cache
def _checkpoint_blobs_sql(t: _Table, versions: int) -> str:
    b = t.column
    pairs = " OR ".join([f"({b['channel']} = %s AND {b['version']} = %s)"] * versions)
    return (
        f"SELECT {b['channel']}, {b['version']}, {b['type']}, {b['blob']} FROM {t.name} "
        f"WHERE {b['thread']} = %s AND {b['checkpoint_ns']} = %s AND ({pairs})"
    )


def checkpoint_values(thread_pk: int, ns: str, checkpoint_id: str, versions: dict[str, str]) -> tuple[list[tuple], list[tuple]]:
    """In one query: the stored values of the channel versions ``versions`` (``(channel,
    version, type, blob)``) and the pending writes of checkpoint ``checkpoint_id`` (``(task_id,
    channel, type, blob)``, in LangGraph's order: task path, task id, index)."""
    blobs, writes = _for_read(CheckpointBlob), _table(CheckpointWrite, router.db_for_read(CheckpointWrite))
    params: list[Any] = [thread_pk, ns, checkpoint_id]
    if versions:
        params = [thread_pk, ns, *(value for pair in versions.items() for value in pair), *params]
    values, pending = [], []
    for kind, _, key, _, channel, type_, blob in blobs.select(_checkpoint_values_sql(blobs, writes, len(versions)), params):
        (pending if kind else values).append((key, channel, type_, blob) if kind else (channel, key, type_, blob))
    return values, pending


@cache
def _checkpoint_values_sql(blobs: _Table, writes: _Table, versions: int) -> str:
    b, w = blobs.column, writes.column
    sql = (
        f"SELECT 1, {w['task_path']}, {w['task_id']}, {w['idx']}, {w['channel']}, {w['type']}, {w['blob']} FROM {writes.name} "
        f"WHERE {w['thread']} = %s AND {w['checkpoint_ns']} = %s AND {w['checkpoint_id']} = %s"
    )
    if versions:
        pairs = " OR ".join([f"({b['channel']} = %s AND {b['version']} = %s)"] * versions)
        sql = (
            f"SELECT 0, '', {b['version']}, 0, {b['channel']}, {b['type']}, {b['blob']} FROM {blobs.name} "
            f"WHERE {b['thread']} = %s AND {b['checkpoint_ns']} = %s AND ({pairs}) UNION ALL {sql}"
        )
    return sql + " ORDER BY 1, 2, 3, 4"


def insert_checkpoint(
    thread_pk: int, ns: str, checkpoint_id: str, parent_id: str, checkpoint: Any, metadata: Any, message_runs: Any, now: datetime
) -> None:
    """Store a checkpoint (a checkpoint stored again under its id replaces the first)."""
    t = _for_write(Checkpoint)
    connection = t.connection
    fields = t.fields
    values = [
        thread_pk, ns, checkpoint_id, parent_id,
        fields["checkpoint"].get_db_prep_save(checkpoint, connection),
        fields["metadata"].get_db_prep_save(metadata, connection),
        fields["message_runs"].get_db_prep_save(message_runs, connection),
        fields["created_at"].get_db_prep_save(now, connection),
    ]  # fmt: skip
    t.update(_insert_checkpoint_sql(t), values)


@cache
def _insert_checkpoint_sql(t: _Table) -> str:
    columns = ["thread", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "checkpoint", "metadata", "message_runs", "created_at"]
    return _insert_sql(t, columns, 1, ["thread", "checkpoint_ns", "checkpoint_id"], ["checkpoint", "metadata", "message_runs"])


def can_insert_checkpoint_at_once() -> bool:
    """Whether the checkpoints' database stores a checkpoint with its new rows at once
    (``insert_checkpoint_at_once``): PostgreSQL in one statement, SQLite in one transaction of
    plain statements."""
    return _for_write(Checkpoint).connection.vendor in ("postgresql", "sqlite")


#: Stands, in the message runs given to ``insert_checkpoint_at_once``, for the runs of the rows
#: the statement inserts (their ids are known only once they are inserted): ``new_rows_runs``.
NEW_ROWS = "pyhub_ai:new rows"


def new_rows_runs(ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """The message runs of rows just inserted with ``ids``: one run when the ids follow each
    other (no other row can lie between them), else one run per row."""
    if ids and ids[-1] - ids[0] + 1 == len(ids):
        return [(ids[0], ids[-1], len(ids))]
    return [(pk, pk, 1) for pk in ids]


def insert_checkpoint_at_once(
    thread_pk: int,
    ns: str,
    checkpoint_id: str,
    parent_id: str,
    checkpoint: Any,
    metadata: Any,
    message_runs: dict[str, Any],
    now: datetime,
    *,
    blobs: Sequence[tuple[str, str, str, bytes]] = (),
    rows: Sequence[ConversationMessage] = (),
) -> list[int]:
    """Store a checkpoint with its new values ``blobs`` and the new message rows ``rows`` at
    once (see ``can_insert_checkpoint_at_once``). One list of ``message_runs`` ends with
    ``NEW_ROWS``, which is replaced with the runs of the inserted rows (``new_rows_runs``).
    Sets the rows' ids and returns them.

    On PostgreSQL, one statement: one round trip instead of four (``BEGIN``, the rows, the
    checkpoint, ``COMMIT``), as a put there is mostly waiting for the server
    (bench/results/checkpointer.md). The runs are spliced into the JSON text, not built with
    jsonb functions: PostgreSQL took 0.41 ms to parse, plan and run a statement that merged
    them into the list's last run against 0.31 ms for this one (the plan is not kept: Django
    turns prepared statements off by default), measured 2026-11-30. On SQLite, one
    transaction (``_insert_checkpoint_at_once_sqlite``)."""
    t, b, m = _for_write(Checkpoint), _for_write(CheckpointBlob), _table(ConversationMessage, router.db_for_write(Checkpoint))
    connection = t.connection
    if connection.vendor == "sqlite":
        return _insert_checkpoint_at_once_sqlite(t, (thread_pk, ns, checkpoint_id, parent_id, checkpoint, metadata), message_runs, now, blobs, rows)
    params: list[Any] = []
    if rows:
        for row in rows:
            row.created_at = now
        fields = _insert_fields(m)
        params += [field.get_db_prep_save(getattr(row, field.attname), connection) for row in rows for field in fields]
    if blobs:
        params += [
            value
            for blob_channel, version, type_, blob in blobs
            for value in (thread_pk, ns, blob_channel, version, type_, b.fields["blob"].get_db_prep_save(blob, connection))
        ]
    fields = t.fields
    params += [
        thread_pk, ns, checkpoint_id, parent_id,
        fields["checkpoint"].get_db_prep_save(checkpoint, connection),
        fields["metadata"].get_db_prep_save(metadata, connection),
    ]  # fmt: skip
    runs = json.dumps(message_runs, separators=(",", ":"))
    params += runs.split(json.dumps(NEW_ROWS), 1) if rows else [runs]
    params.append(fields["created_at"].get_db_prep_save(now, connection))
    (ids,) = t.select(_insert_checkpoint_at_once_sql(t, b, m, len(rows), len(blobs)), params)[0]
    for row, pk in zip(rows, ids or []):
        row.pk = pk
    return list(ids or [])


def _insert_checkpoint_at_once_sqlite(
    t: _Table, row: tuple[Any, ...], message_runs: dict[str, Any], now: datetime, blobs: Sequence[tuple[str, str, str, bytes]], rows: Sequence[ConversationMessage]
) -> list[int]:
    """``insert_checkpoint_at_once`` on SQLite, which has no data-modifying ``WITH``: the rows,
    the blobs and the checkpoint in one transaction (``direct_sql.transaction``)."""
    with direct_sql.transaction(t.connection):
        ids = insert_messages(rows, using=t.alias) or []
        insert_blobs(row[0], row[1], blobs)
        new_runs = [list(run) for run in new_rows_runs(ids)]
        message_runs = {channel: [run for item in runs for run in (new_runs if item == NEW_ROWS else [item])] for channel, runs in message_runs.items()}
        insert_checkpoint(*row, message_runs, now)
    return ids


@cache
def _insert_checkpoint_at_once_sql(t: _Table, b: _Table, m: _Table, rows: int, blobs: int) -> str:
    c = t.column
    ctes = []
    if rows:
        ctes.append(f"new AS ({_plain_insert_sql(m, [field.name for field in _insert_fields(m)], rows)} RETURNING {m.column['id']} AS id)")
    if blobs:
        ctes.append(f"blobs AS ({_insert_blobs_sql(b, blobs)})")
    # The new rows' runs as new_rows_runs makes them, spliced into the JSON text (one row: the
    # simplest statement, the one almost every put runs).
    if rows == 1:
        runs = "(%s || (SELECT '[' || id || ',' || id || ',1]' FROM new) || %s)::jsonb"
    elif rows:
        runs = (
            "(%s || (SELECT CASE WHEN MAX(id) - MIN(id) + 1 = COUNT(*) THEN '[' || MIN(id) || ',' || MAX(id) || ',' || COUNT(*) || ']' "
            "ELSE string_agg('[' || id || ',' || id || ',1]', ',' ORDER BY id) END FROM new) || %s)::jsonb"
        )
    else:
        runs = "%s::jsonb"
    columns = ["thread", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "checkpoint", "metadata", "message_runs", "created_at"]
    return (
        (f"WITH {', '.join(ctes)} " if ctes else "")
        + f"INSERT INTO {t.name} ({', '.join(c[name] for name in columns)}) "
        + f"SELECT %s, %s, %s, %s, %s, %s, {runs}, %s"
        + f" ON CONFLICT ({c['thread']}, {c['checkpoint_ns']}, {c['checkpoint_id']}) DO UPDATE SET "
        + ", ".join(f"{c[name]} = excluded.{c[name]}" for name in ("checkpoint", "metadata", "message_runs"))
        + " RETURNING "
        + ("(SELECT ARRAY_AGG(id ORDER BY id) FROM new)" if rows else "NULL")
    )


def insert_blobs(thread_pk: int, ns: str, blobs: Sequence[tuple[str, str, str, bytes]]) -> None:
    """Store channel values ``(channel, version, type, blob)``; a version already stored is kept."""
    if not blobs:
        return
    t = _for_write(CheckpointBlob)
    connection, blob_field = t.connection, t.fields["blob"]
    params = [
        value
        for channel, version, type_, blob in blobs
        for value in (thread_pk, ns, channel, version, type_, blob_field.get_db_prep_save(blob, connection))
    ]
    t.update(_insert_blobs_sql(t, len(blobs)), params)


@cache
def _insert_blobs_sql(t: _Table, rows: int) -> str:
    columns = ["thread", "checkpoint_ns", "channel", "version", "type", "blob"]
    return _insert_sql(t, columns, rows, ["thread", "checkpoint_ns", "channel", "version"])


def insert_writes(
    thread_pk: int, ns: str, checkpoint_id: str, task_id: str, task_path: str, writes: Sequence[tuple[int, str, str, bytes]], *, replace: bool
) -> None:
    """Store a task's writes ``(index, channel, type, blob)``; one already stored (same task and
    index) is kept, or replaced when ``replace``."""
    t = _for_write(CheckpointWrite)
    connection, blob_field = t.connection, t.fields["blob"]
    params = [
        value
        for idx, channel, type_, blob in writes
        for value in (thread_pk, ns, checkpoint_id, task_id, task_path, idx, channel, type_, blob_field.get_db_prep_save(blob, connection))
    ]
    t.update(_insert_writes_sql(t, len(writes), replace), params)


@cache
def _insert_writes_sql(t: _Table, rows: int, replace: bool) -> str:
    columns = ["thread", "checkpoint_ns", "checkpoint_id", "task_id", "task_path", "idx", "channel", "type", "blob"]
    update = ["channel", "type", "blob", "task_path"] if replace else []
    return _insert_sql(t, columns, rows, ["thread", "checkpoint_ns", "checkpoint_id", "task_id", "idx"], update)


#: Gaps per query of ``count_thread_messages_between``: two parameters and one column each,
#: within SQLite's limits (999 parameters before 3.32, 2,000 columns).
_GAPS_PER_QUERY = 400


def count_thread_messages_between(conversation_id: Any, user_id: Any, visitor_key: str, *, gaps: Sequence[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """How many rows a conversation thread has with ids strictly between each ``(after,
    before)`` of ``gaps``, in one query per ``_GAPS_PER_QUERY`` gaps (an index range over the
    thread's rows they span)."""
    t = _table(ConversationMessage, router.db_for_write(Checkpoint))
    c = t.column
    counts: dict[tuple[int, int], int] = {}
    for start in range(0, len(gaps), _GAPS_PER_QUERY):
        chunk = gaps[start : start + _GAPS_PER_QUERY]
        sums = ", ".join([f"COALESCE(SUM(CASE WHEN {c['id']} > %s AND {c['id']} < %s THEN 1 ELSE 0 END), 0)"] * len(chunk))
        sql = f"SELECT {sums} FROM {t.name} WHERE {_thread_where(t, user_id)} AND {c['id']} > %s AND {c['id']} < %s"
        params = [
            *(value for gap in chunk for value in gap), *_thread_params(conversation_id, user_id, visitor_key),
            min(after for after, _ in chunk), max(before for _, before in chunk),
        ]  # fmt: skip
        counts.update(zip(chunk, t.select(sql, params)[0]))
    return counts


def thread_message_rows(
    conversation_id: Any, user_id: Any, visitor_key: str, ranges: Sequence[tuple[int, int]], using: str
) -> list[tuple[int, Any]]:
    """``(id, stored content)`` of a conversation thread's rows with ids in any of the inclusive
    ``ranges``, by id, on the database ``using``: the rows of a checkpoint's message list, read
    without building model instances or converting each value twice (``codec.decode`` reads the
    JSON text)."""
    t = _table(ConversationMessage, using)
    c = t.column
    within = " OR ".join([f"({c['id']} >= %s AND {c['id']} <= %s)"] * len(ranges))
    sql = f"SELECT {c['id']}, {c['content']} FROM {t.name} WHERE {_thread_where(t, user_id)} AND ({within}) ORDER BY {c['id']}"
    params = [*_thread_params(conversation_id, user_id, visitor_key), *(bound for pair in ranges for bound in pair)]
    return t.select(sql, params)
