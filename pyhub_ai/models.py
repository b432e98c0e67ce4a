"""Conversations and their messages.

A conversation holds one or more *threads*. A conversation with an owner has one thread, the
owner's. An owner-less conversation (seed 004 creates one per room) gives every signed-in user
a private thread, keyed by ``user``; anonymous visitors get one keyed by ``visitor_key`` (a
hash of their session key). Every query that reads or writes messages names the thread.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from . import codec
from .tokens import count_tokens

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage


class Conversation(models.Model):
    """A chat room's stored conversation; its messages are ``ConversationMessage`` rows."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="pyhub_ai_conversations",
        verbose_name=_("owner"),
        help_text=_("Leave empty for a room where every user has a private thread."),
    )
    title = models.CharField(_("title"), max_length=200, blank=True)
    session_id = models.CharField(
        _("session id"),
        max_length=255,
        unique=True,
        null=True,
        blank=True,
        help_text=_("The key DjangoChatMessageHistory(session_id=...) addresses this conversation by."),
    )
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    expires_at = models.DateTimeField(
        _("expires at"),
        null=True,
        blank=True,
        db_index=True,
        help_text=_("When pyhub_ai_prune may delete it; pushed back on every turn when PYHUB_AI_CONVERSATION_TTL is set."),
    )
    input_tokens = models.PositiveBigIntegerField(_("input tokens"), default=0)
    output_tokens = models.PositiveBigIntegerField(_("output tokens"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-pk"]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")

    def __str__(self) -> str:
        return self.title or _("Conversation #%(pk)s") % {"pk": self.pk}

    def clear(self) -> None:
        """Delete every message of every thread of this conversation: everybody's.

        For administrators. Never call it on a visitor's behalf (in an owner-less room it would
        delete every other user's thread too): ``DjangoChatMessageHistory(conversation=...,
        user=...).clear()`` deletes one thread (docs/security.md, "Who may delete what").
        """
        self.messages.all().delete()

    async def aclear(self) -> None:
        """Async ``clear()``."""
        await self.messages.all().adelete()


class ConversationMessage(models.Model):
    """One LangChain message, stored in the codec's JSON form (see ``pyhub_ai.codec``)."""

    class Role(models.TextChoices):
        HUMAN = "human", _("human")
        AI = "ai", _("AI")
        SYSTEM = "system", _("system")
        TOOL = "tool", _("tool")

    class Status(models.TextChoices):
        COMPLETE = "complete", _("complete")
        STREAMING = "streaming", _("streaming")
        ERROR = "error", _("error")
        INTERRUPTED = "interrupted", _("interrupted")

    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("conversation"),
        db_index=False,  # pyhub_ai_msg_thread_idx starts with it: one index less to write per message
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
        help_text=_("Whose thread this message belongs to."),
    )
    visitor_key = models.CharField(
        _("visitor key"),
        max_length=64,
        blank=True,
        default="",
        help_text=_("For anonymous visitors: a hash of their session key."),
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    content = models.JSONField(_("content"), help_text=_("The LangChain message, as pyhub_ai.codec stores it."))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.COMPLETE)
    visible = models.BooleanField(
        _("visible"),
        default=True,
        help_text=_("Hidden messages (the conversation starter) go to the model but not to the page."),
    )
    turn_id = models.UUIDField(_("turn"), null=True, blank=True)
    idempotency_key = models.CharField(
        _("idempotency key"),
        max_length=64,
        blank=True,
        default="",
        help_text=_("Sent by the client with a message, so a resent frame does not start a second turn."),
    )
    token_count = models.PositiveIntegerField(
        _("token count"), default=0, help_text=_("Estimated when the message is stored; used by the history window.")
    )
    # No database constraint and no cascade: deleting a conversation stays one fast DELETE of its
    # rows (pyhub_ai_prune), whatever the shape of its tree.
    parent = models.ForeignKey(
        "self",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("parent"),
        help_text=_(
            "The message this one follows in its branch; messages with the same parent are versions of one "
            "another (an edited message, a regenerated reply). Empty in a thread that never branched: there "
            "each message follows the one before it."
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        verbose_name = _("conversation message")
        verbose_name_plural = _("conversation messages")
        indexes = [
            # "The last N messages of this thread" is one range scan of this index, backwards.
            models.Index(fields=["conversation", "user", "visitor_key", "-id"], name="pyhub_ai_msg_thread_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "user", "visitor_key", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="pyhub_ai_msg_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()} #{self.pk}"

    @property
    def message(self) -> BaseMessage:
        """The stored LangChain message (raises ``codec.CodecError`` for a corrupt row)."""
        return codec.decode(self.content)

    @classmethod
    def from_message(cls, message: BaseMessage, **fields: Any) -> ConversationMessage:
        """An unsaved row for ``message``; ``fields`` sets the thread, status, turn and so on."""
        return cls(role=role_of(message), content=codec.encode(message), token_count=count_tokens(message), **fields)


_ROLE_BY_TYPE = {
    "human": ConversationMessage.Role.HUMAN,
    "ai": ConversationMessage.Role.AI,
    "system": ConversationMessage.Role.SYSTEM,
    "tool": ConversationMessage.Role.TOOL,
    "function": ConversationMessage.Role.TOOL,
}


def role_of(message: BaseMessage) -> str:
    """The stored role of a LangChain message ("AIMessageChunk" counts as "ai")."""
    message_type = message.type.removesuffix("MessageChunk").lower()
    return _ROLE_BY_TYPE.get(message_type, ConversationMessage.Role.HUMAN)


class MessageFeedback(models.Model):
    """A user's thumbs up or down on a reply, with an optional comment; one per user (or
    anonymous visitor) and message, changeable (see ``pyhub_ai.feedback``)."""

    class Rating(models.IntegerChoices):
        UP = 1, _("thumbs up")
        DOWN = -1, _("thumbs down")

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="feedback", verbose_name=_("conversation")
    )
    # Like ConversationMessage.parent: no constraint, so a conversation's rows go in fast DELETEs.
    message = models.ForeignKey(
        ConversationMessage,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        verbose_name=_("message"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=_("user")
    )
    visitor_key = models.CharField(_("visitor key"), max_length=64, blank=True, default="")
    rating = models.SmallIntegerField(_("rating"), choices=Rating.choices)
    comment = models.TextField(_("comment"), blank=True, default="")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-pk"]
        verbose_name = _("feedback")
        verbose_name_plural = _("feedback")
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], condition=models.Q(user__isnull=False), name="pyhub_ai_feedback_user"),
            models.UniqueConstraint(
                fields=["message", "visitor_key"], condition=models.Q(user__isnull=True), name="pyhub_ai_feedback_visitor"
            ),
        ]
        indexes = [models.Index(fields=["conversation", "rating"], name="pyhub_ai_feedback_conv_idx")]

    def __str__(self) -> str:
        return f"{self.get_rating_display()} #{self.message_id}"


def _attachment_path(attachment: Attachment, filename: str) -> str:
    """Where an attachment's file goes in the default storage: a random name, never the user's."""
    import uuid
    from pathlib import PurePath

    suffix = PurePath(filename).suffix.lower()[:10]
    return f"pyhub_ai/attachments/{uuid.uuid4().hex}{suffix}"


class Attachment(models.Model):
    """A file a user attached to a message (an image, or a text file), kept in Django's default
    storage; the message refers to it by id (see ``pyhub_ai.attachments``). Only the user (or
    anonymous visitor) who uploaded it may fetch it or send it."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="attachments", verbose_name=_("conversation")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=_("user")
    )
    visitor_key = models.CharField(_("visitor key"), max_length=64, blank=True, default="")
    # Like ConversationMessage.parent: no constraint, set once the message is stored.
    message = models.ForeignKey(
        ConversationMessage, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True,
        related_name="+", verbose_name=_("message"),
    )
    file = models.FileField(_("file"), upload_to=_attachment_path, max_length=255)
    name = models.CharField(_("name"), max_length=255, help_text=_("The file's name on the user's computer."))
    content_type = models.CharField(_("type"), max_length=100)
    size = models.PositiveIntegerField(_("size"), help_text=_("In bytes."))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")

    def __str__(self) -> str:
        return self.name

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


class ThreadBranch(models.Model):
    """The branch a thread shows, once the thread has branched (see ``pyhub_ai.branches``).

    A thread without this row never branched: its messages form one line, in id order. With it,
    every message names its ``parent`` and the thread shows the branch ending at ``leaf``, as long
    as the thread's newest message is still ``newest`` (a turn adds newer messages, on the branch
    it continued, which then ends at the newest message).
    """

    key = models.CharField(_("thread"), max_length=200, primary_key=True)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="+", verbose_name=_("conversation")
    )
    leaf = models.PositiveBigIntegerField(_("leaf"), help_text=_("The id of the last message of the branch shown."))
    newest = models.PositiveBigIntegerField(_("newest"), help_text=_("The thread's newest message id when the branch was chosen."))

    class Meta:
        verbose_name = _("thread branch")
        verbose_name_plural = _("thread branches")

    def __str__(self) -> str:
        return self.key


class ThreadLock(models.Model):
    """A lease that lets one turn at a time run in a conversation thread (see ``pyhub_ai.locks``)."""

    key = models.CharField(_("thread"), max_length=200, primary_key=True)
    token = models.CharField(_("holder"), max_length=32)
    expires_at = models.DateTimeField(_("expires at"))

    class Meta:
        verbose_name = _("thread lock")
        verbose_name_plural = _("thread locks")

    def __str__(self) -> str:
        return self.key


# LangGraph's checkpoints (pyhub_ai.checkpoint) live in a module of their own.
from .checkpoint_models import Checkpoint, CheckpointBlob, CheckpointWrite, GraphThread  # noqa: E402, F401
# The usage ledger (pyhub_ai.ledger, pyhub_ai.budgets) too.
from .usage_models import UsageRecord, UsageTotal  # noqa: E402, F401
