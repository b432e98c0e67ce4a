"""Full-text search of messages (pyhub_ai.search): an FTS5 table kept by triggers on SQLite, a
GIN index on PostgreSQL; nothing on other databases (search falls back to a scan there)."""
from django.db import migrations

# The text of a stored message (pyhub_ai.codec's form): a string content, or the text parts of
# multimodal content. Only the visible messages of people and the model are indexed.
SQLITE_TEXT = """CASE json_type(new.content, '$.data.content')
    WHEN 'text' THEN json_extract(new.content, '$.data.content')
    WHEN 'array' THEN (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(new.content, '$.data.content')
                       WHERE json_extract(value, '$.type') = 'text')
  END"""
SQLITE_INDEXED = "new.visible AND new.role IN ('human', 'ai')"

SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE pyhub_ai_message_fts USING fts5(text, tokenize = 'unicode61')",
    f"""CREATE TRIGGER pyhub_ai_message_fts_insert AFTER INSERT ON pyhub_ai_conversationmessage WHEN {SQLITE_INDEXED}
    BEGIN INSERT INTO pyhub_ai_message_fts (rowid, text) VALUES (new.id, {SQLITE_TEXT}); END""",
    f"""CREATE TRIGGER pyhub_ai_message_fts_update AFTER UPDATE OF content, visible ON pyhub_ai_conversationmessage
    BEGIN
      DELETE FROM pyhub_ai_message_fts WHERE rowid = old.id;
      INSERT INTO pyhub_ai_message_fts (rowid, text) SELECT new.id, {SQLITE_TEXT} WHERE {SQLITE_INDEXED};
    END""",
    """CREATE TRIGGER pyhub_ai_message_fts_delete AFTER DELETE ON pyhub_ai_conversationmessage
    BEGIN DELETE FROM pyhub_ai_message_fts WHERE rowid = old.id; END""",
    "INSERT INTO pyhub_ai_message_fts (rowid, text) SELECT new.id, "
    + SQLITE_TEXT.replace("new.", "new.")
    + f" FROM pyhub_ai_conversationmessage AS new WHERE {SQLITE_INDEXED}",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS pyhub_ai_message_fts_insert",
    "DROP TRIGGER IF EXISTS pyhub_ai_message_fts_update",
    "DROP TRIGGER IF EXISTS pyhub_ai_message_fts_delete",
    "DROP TABLE IF EXISTS pyhub_ai_message_fts",
]

#: Must be written exactly like pyhub_ai.search.POSTGRES_VECTOR, or the index is not used.
POSTGRES_VECTOR = "to_tsvector('simple', coalesce(content -> 'data' ->> 'content', ''))"
POSTGRES_FORWARD = [f"CREATE INDEX pyhub_ai_message_search ON pyhub_ai_conversationmessage USING gin (({POSTGRES_VECTOR}))"]
POSTGRES_BACKWARD = ["DROP INDEX IF EXISTS pyhub_ai_message_search"]


def run(statements_by_vendor):
    def apply(apps, schema_editor):
        for sql in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return apply


class Migration(migrations.Migration):

    dependencies = [("pyhub_ai", "0005_message_feedback")]

    operations = [
        migrations.RunPython(
            run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
    ]
