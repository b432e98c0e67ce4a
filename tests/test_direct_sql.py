"""``pyhub_ai.direct_sql``: the hand-written statements run on the DB-API cursor, and whoever
watches Django's cursors still sees them."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pyhub_ai import direct_sql, statements
from pyhub_ai.models import Conversation, ThreadLock

pytestmark = pytest.mark.django_db


def _lock_table() -> str:
    return connection.ops.quote_name(ThreadLock._meta.db_table)


def _insert_lock_sql() -> str:
    quote = connection.ops.quote_name
    return f"INSERT INTO {_lock_table()} ({quote('key')}, {quote('token')}, {quote('expires_at')}) VALUES (%s, %s, %s)"


def _lock_params(key: str) -> list:
    return [key, "holder", ThreadLock._meta.get_field("expires_at").get_db_prep_save(timezone.now(), connection)]


def _count_locks() -> int:
    with direct_sql.execute(connection, f"SELECT COUNT(*) FROM {_lock_table()} WHERE {connection.ops.quote_name('key')} LIKE %s", ["direct-%%"]) as cursor:
        return cursor.fetchone()[0]


def test_nobody_watches_by_default_so_statements_go_to_the_db_api_cursor(monkeypatch):
    conversation = Conversation.objects.create()
    calls = []
    monkeypatch.setattr(CursorWrapper, "_execute", lambda self, *args: calls.append(args))

    row = statements.conversation(conversation.pk)

    assert not direct_sql.watched(connection)
    assert row.pk == conversation.pk
    assert calls == []  # Django's cursor was not used


def test_query_logging_sees_the_statements():
    conversation = Conversation.objects.create()

    with CaptureQueriesContext(connection) as queries:
        assert direct_sql.watched(connection)
        statements.conversation(conversation.pk)

    assert any(connection.ops.quote_name(Conversation._meta.db_table) in query["sql"] for query in queries.captured_queries)


def test_execute_wrappers_see_the_statements():
    conversation = Conversation.objects.create()
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        statements.conversation(conversation.pk)

    assert len(seen) == 1


def test_a_patched_django_cursor_sees_the_statements(monkeypatch):
    # What APM agents do (Sentry's Django integration wraps CursorWrapper.execute).
    seen = []
    original = CursorWrapper.execute

    def traced_execute(self, sql, params=None):
        seen.append(sql)
        return original(self, sql, params)

    conversation = Conversation.objects.create()
    monkeypatch.setattr(CursorWrapper, "execute", traced_execute)

    statements.conversation(conversation.pk)

    assert direct_sql.watched(connection)
    assert len(seen) == 1


def test_a_connection_whose_cursor_method_was_replaced_sees_the_statements(monkeypatch):
    # What django-debug-toolbar's SQL panel does to each connection.
    conversation = Conversation.objects.create()
    seen = []
    original = connection.cursor

    def cursor(*args, **kwargs):
        seen.append("cursor")
        return original(*args, **kwargs)

    monkeypatch.setattr(connection, "cursor", cursor)

    statements.conversation(conversation.pk)

    assert seen == ["cursor"]


def test_percent_signs_and_placeholders_mean_what_they_mean_in_djangos_cursor():
    ThreadLock.objects.create(key="direct-1", token="a", expires_at=timezone.now())
    ThreadLock.objects.create(key="other", token="b", expires_at=timezone.now())

    assert _count_locks() == 1  # "LIKE 'direct-%'": %% is a literal percent sign


def test_database_errors_are_djangos_and_a_broken_transaction_is_reported_as_django_does():
    ThreadLock.objects.create(key="direct-unique", token="a", expires_at=timezone.now())

    with pytest.raises(IntegrityError), transaction.atomic():
        with direct_sql.execute(connection, _insert_lock_sql(), _lock_params("direct-unique")):
            pass

    with transaction.atomic():
        connection.needs_rollback = True  # what an atomic block marks after an error it caught
        with pytest.raises(TransactionManagementError):
            _count_locks()
        connection.needs_rollback = False


@pytest.mark.django_db(transaction=True)
def test_a_sqlite_transaction_commits_or_rolls_back_its_statements():
    if connection.vendor != "sqlite":
        pytest.skip("direct_sql.transaction begins a transaction of its own on SQLite only")

    with direct_sql.transaction(connection):
        with direct_sql.execute(connection, _insert_lock_sql(), _lock_params("direct-a")):
            pass
    with pytest.raises(RuntimeError):
        with direct_sql.transaction(connection):
            with direct_sql.execute(connection, _insert_lock_sql(), _lock_params("direct-b")):
                pass
            raise RuntimeError("the put failed")
    with pytest.raises(IntegrityError):
        with direct_sql.transaction(connection):
            with direct_sql.execute(connection, _insert_lock_sql(), _lock_params("direct-c")):
                pass
            with direct_sql.execute(connection, _insert_lock_sql(), _lock_params("direct-a")):
                pass

    assert sorted(ThreadLock.objects.filter(key__startswith="direct-").values_list("key", flat=True)) == ["direct-a"]
    assert not connection.connection.in_transaction
