"""Drop the single-column indexes of four foreign keys that a composite index already serves
(it starts with the same column): one index less to write per message and per checkpoint row.

The indexes are dropped by name, not by ``AlterField`` at the database level: on SQLite,
``AlterField`` rebuilds the table, which would drop the full-text search triggers of
``ConversationMessage`` (migration 0006) and copy every row."""

import django.db.models.deletion
from django.db import migrations, models

#: (model, foreign key) whose own index goes.
FOREIGN_KEYS = [
    ("conversationmessage", "conversation"),
    ("checkpoint", "thread"),
    ("checkpointblob", "thread"),
    ("checkpointwrite", "thread"),
]


def _single_column_indexes(schema_editor, model, column):
    """The names of the plain (not unique) indexes of ``model`` on ``column`` alone."""
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, model._meta.db_table)
    return [
        name
        for name, info in constraints.items()
        if info["index"] and not info["unique"] and not info["primary_key"] and info["columns"] == [column]
    ]


def drop_indexes(apps, schema_editor):
    for model_name, field_name in FOREIGN_KEYS:
        model = apps.get_model("pyhub_ai", model_name)
        column = model._meta.get_field(field_name).column
        for name in _single_column_indexes(schema_editor, model, column):
            schema_editor.execute(schema_editor._delete_index_sql(model, name))


def create_indexes(apps, schema_editor):
    for model_name, field_name in FOREIGN_KEYS:
        model = apps.get_model("pyhub_ai", model_name)
        field = model._meta.get_field(field_name)
        if not _single_column_indexes(schema_editor, model, field.column):
            schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


class Migration(migrations.Migration):

    dependencies = [
        ('pyhub_ai', '0008_checkpoint_message_runs'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
            state_operations=[
                migrations.AlterField(
                    model_name='checkpoint',
                    name='thread',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='checkpoints', to='pyhub_ai.graphthread', verbose_name='LangGraph thread'),
                ),
                migrations.AlterField(
                    model_name='checkpointblob',
                    name='thread',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='pyhub_ai.graphthread', verbose_name='LangGraph thread'),
                ),
                migrations.AlterField(
                    model_name='checkpointwrite',
                    name='thread',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='pyhub_ai.graphthread', verbose_name='LangGraph thread'),
                ),
                migrations.AlterField(
                    model_name='conversationmessage',
                    name='conversation',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='messages', to='pyhub_ai.conversation', verbose_name='conversation'),
                ),
            ],
        ),
    ]
