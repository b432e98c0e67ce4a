"""The tables of LangGraph's checkpoints (``pyhub_ai.checkpoint.DjangoSaver``).

A LangGraph thread (``thread_id``) is a ``GraphThread``: a name for one *conversation thread*
(a conversation, plus the user or visitor whose thread it is; see ``pyhub_ai.models``). Its
messages are that thread's ``ConversationMessage`` rows, stored once; a checkpoint's message
list refers to them (``Checkpoint.message_runs``, see ``pyhub_ai.checkpoint_messages``).
Everything else a checkpoint holds is in these tables, as LangGraph's own savers store it: one
row per checkpoint (with its small plain values), one per other channel value that changed
(``CheckpointBlob``) and one per pending write (``CheckpointWrite``). A ``put`` that adds no
message and no large value is one ``INSERT``.

Imported by ``pyhub_ai.models``, so Django finds these models; deleting a conversation deletes
its LangGraph threads and their checkpoints.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .models import Conversation


class GraphThread(models.Model):
    """A LangGraph ``thread_id`` and the conversation thread its messages are stored in."""

    thread_id = models.CharField(_("thread id"), max_length=255, unique=True)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="graph_threads", verbose_name=_("conversation")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
        help_text=_("Whose thread of the conversation the messages are stored in."),
    )
    visitor_key = models.CharField(_("visitor key"), max_length=64, blank=True, default="")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("LangGraph thread")
        verbose_name_plural = _("LangGraph threads")

    def __str__(self) -> str:
        return self.thread_id


class Checkpoint(models.Model):
    """One LangGraph checkpoint; ``checkpoint`` holds it with its small plain channel values,
    ``message_runs`` its message lists (as runs of the thread's rows), and the other values
    are ``CheckpointBlob`` rows."""

    # No index of its own, here and in CheckpointBlob and CheckpointWrite: each model's unique key
    # starts with the thread, so that index serves it (one index less to write per row).
    thread = models.ForeignKey(
        GraphThread, on_delete=models.CASCADE, related_name="checkpoints", verbose_name=_("LangGraph thread"), db_index=False
    )
    checkpoint_ns = models.CharField(_("namespace"), max_length=255, blank=True, default="")
    checkpoint_id = models.CharField(_("checkpoint id"), max_length=64)
    parent_checkpoint_id = models.CharField(_("parent checkpoint id"), max_length=64, blank=True, default="")
    checkpoint = models.JSONField(_("checkpoint"))
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    message_runs = models.JSONField(
        _("message runs"),
        default=dict,
        blank=True,
        help_text=_("Per channel, its list of messages: runs of the thread's rows (first id, last id, count)."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("checkpoint")
        verbose_name_plural = _("checkpoints")
        constraints = [
            models.UniqueConstraint(fields=["thread", "checkpoint_ns", "checkpoint_id"], name="pyhub_ai_checkpoint_key"),
        ]

    def __str__(self) -> str:
        return f"{self.checkpoint_ns or '-'} {self.checkpoint_id}"


class CheckpointBlob(models.Model):
    """One version of one channel's value, serialized (``type`` says how; see ``DjangoSaver``)."""

    thread = models.ForeignKey(GraphThread, on_delete=models.CASCADE, related_name="+", verbose_name=_("LangGraph thread"), db_index=False)
    checkpoint_ns = models.CharField(_("namespace"), max_length=255, blank=True, default="")
    channel = models.CharField(_("channel"), max_length=255)
    version = models.CharField(_("version"), max_length=64)
    type = models.CharField(_("type"), max_length=64)
    blob = models.BinaryField(_("value"), null=True)

    class Meta:
        verbose_name = _("checkpoint value")
        verbose_name_plural = _("checkpoint values")
        constraints = [
            models.UniqueConstraint(
                fields=["thread", "checkpoint_ns", "channel", "version"], name="pyhub_ai_checkpoint_blob_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} @ {self.version}"


class CheckpointWrite(models.Model):
    """A write of a task, pending for the checkpoint after ``checkpoint_id``."""

    thread = models.ForeignKey(GraphThread, on_delete=models.CASCADE, related_name="+", verbose_name=_("LangGraph thread"), db_index=False)
    checkpoint_ns = models.CharField(_("namespace"), max_length=255, blank=True, default="")
    checkpoint_id = models.CharField(_("checkpoint id"), max_length=64)
    task_id = models.CharField(_("task id"), max_length=64)
    task_path = models.CharField(_("task path"), max_length=255, blank=True, default="")
    idx = models.IntegerField(_("index"))
    channel = models.CharField(_("channel"), max_length=255)
    type = models.CharField(_("type"), max_length=64)
    blob = models.BinaryField(_("value"))

    class Meta:
        verbose_name = _("checkpoint write")
        verbose_name_plural = _("checkpoint writes")
        constraints = [
            models.UniqueConstraint(
                fields=["thread", "checkpoint_ns", "checkpoint_id", "task_id", "idx"], name="pyhub_ai_checkpoint_write_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} {self.idx} {self.channel}"
