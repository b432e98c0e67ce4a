"""The admin of LangGraph's checkpoints (``pyhub_ai.checkpoint``): read-only, linked to the
conversation each thread's messages are stored in. Imported by ``pyhub_ai.admin``.

Checkpoints are written by LangGraph only; the admin shows them and can delete a whole thread
(its checkpoints go with it; its messages stay in the conversation).
"""
from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from .checkpoint_messages import MESSAGES_TYPE, decode_runs, merged_runs
from .models import Checkpoint, CheckpointBlob, CheckpointWrite, GraphThread


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never added or edited here."""

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class MetadataColumns:
    """The ``step`` and ``source`` of a checkpoint's metadata, as admin columns."""

    @admin.display(description=_("step"))
    def step(self, obj: Checkpoint) -> Any:
        return obj.metadata.get("step")

    @admin.display(description=_("source"))
    def source(self, obj: Checkpoint) -> Any:
        return obj.metadata.get("source")


class CheckpointInline(MetadataColumns, admin.TabularInline):
    model = Checkpoint
    fields = ["checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "step", "source", "created_at"]
    readonly_fields = fields
    ordering = ["-checkpoint_id"]
    extra = 0
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(GraphThread)
class GraphThreadAdmin(ReadOnlyAdmin):
    list_display = ["thread_id", "conversation_link", "user", "visitor_key", "created_at"]
    list_select_related = ["conversation", "user"]
    search_fields = ["thread_id", "conversation__title"]
    readonly_fields = ["thread_id", "conversation_link", "user", "visitor_key", "created_at"]
    fields = readonly_fields
    inlines = [CheckpointInline]

    @admin.display(description=_("conversation"), ordering="conversation")
    def conversation_link(self, obj: GraphThread) -> str:
        url = reverse("admin:pyhub_ai_conversation_change", args=[obj.conversation_id])
        return format_html('<a href="{}">{}</a>', url, obj.conversation)


@admin.register(Checkpoint)
class CheckpointAdmin(MetadataColumns, ReadOnlyAdmin):
    list_display = ["checkpoint_id", "thread", "checkpoint_ns", "step", "source", "created_at"]
    list_select_related = ["thread"]
    list_filter = ["created_at"]
    search_fields = ["thread__thread_id", "checkpoint_id"]
    readonly_fields = ["thread", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "created_at", "values", "pretty_metadata"]
    fields = readonly_fields

    @admin.display(description=_("metadata"))
    def pretty_metadata(self, obj: Checkpoint) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.metadata, indent=2, ensure_ascii=False, default=str))

    @admin.display(description=_("channel versions and values"))
    def values(self, obj: Checkpoint) -> str:
        """Each channel's version, with its inline value or how its stored value is kept."""
        versions = obj.checkpoint.get("channel_versions", {})
        inline = obj.checkpoint.get("channel_values", {})
        blobs = {
            (blob.channel, blob.version): blob
            for blob in CheckpointBlob.objects.filter(thread_id=obj.thread_id, checkpoint_ns=obj.checkpoint_ns, channel__in=list(versions))
        }
        message_runs = obj.message_runs or {}
        lines = []
        for channel, version in sorted(versions.items()):
            if channel in inline:
                lines.append(f"{channel}: {inline[channel]!r}")
                continue
            blob = blobs.get((channel, str(version)))
            if channel in message_runs or (blob is not None and blob.type == MESSAGES_TYPE):
                runs = merged_runs(message_runs[channel] if channel in message_runs else decode_runs(blob.blob))
                count = sum(run[2] for run in runs)
                lines.append(f"{channel}: {count} messages (conversation rows {', '.join(f'#{a}-#{b}' for a, b, _ in runs)})")
            elif blob is None:
                lines.append(f"{channel}: -")
            else:
                lines.append(f"{channel}: {blob.type}, {len(bytes(blob.blob or b''))} bytes")
        return format_html("<pre>{}</pre>", "\n".join(lines))


@admin.register(CheckpointWrite)
class CheckpointWriteAdmin(ReadOnlyAdmin):
    list_display = ["checkpoint_id", "thread", "task_id", "idx", "channel", "type"]
    list_select_related = ["thread"]
    search_fields = ["thread__thread_id", "checkpoint_id", "task_id", "channel"]
    readonly_fields = ["thread", "checkpoint_ns", "checkpoint_id", "task_id", "task_path", "idx", "channel", "type"]
    fields = readonly_fields
