"""Thumbs up or down, with an optional comment, on a reply; and their export for evaluation.

``set_feedback`` is called by ``FeedbackMixin.give_feedback`` (the ``feedback`` frame);
``feedback_of`` by ``FrameProtocolMixin.get_history_page`` (each reply's ``feedback`` in the
page); ``export_records`` by the admin's "Export feedback as JSON Lines" actions.

Feedback is given by whoever's thread the reply is in: another user's reply is unknown
(``branches.UnknownMessage``), exactly like a reply that does not exist.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import QuerySet

from . import branches, locks, statements
from .conf import conf
from .display import message_object
from .models import ConversationMessage, MessageFeedback

#: The longest comment kept, in characters.
MAX_COMMENT_LENGTH = 2000

#: The protocol's names of the ratings.
RATINGS = {"up": MessageFeedback.Rating.UP, "down": MessageFeedback.Rating.DOWN}
RATING_NAMES = {value: name for name, value in RATINGS.items()}


def set_feedback(thread: dict[str, Any], message_id: int, rating: str | None, comment: str = "") -> dict[str, Any] | None:
    """Store (or with ``rating=None`` remove) the thread owner's feedback on the reply
    ``message_id``; returns the feedback as the protocol shows it (``None`` once removed)."""
    reply = branches.thread_row(thread, message_id, role=ConversationMessage.Role.AI)
    owner = {"message_id": reply.pk, "user_id": thread["user_id"], "visitor_key": "" if thread["user_id"] else thread["visitor_key"]}
    if rating is None:
        MessageFeedback.objects.filter(**owner).delete()
        return None
    feedback, _ = MessageFeedback.objects.update_or_create(
        **owner, defaults={"conversation_id": reply.conversation_id, "rating": RATINGS[rating], "comment": comment}
    )
    return as_protocol(feedback)


def as_protocol(feedback: MessageFeedback) -> dict[str, Any]:
    return {"rating": RATING_NAMES[feedback.rating], "comment": feedback.comment}


def feedback_of(thread: dict[str, Any], rows: Iterable[ConversationMessage]) -> dict[int, dict[str, Any]]:
    """The thread owner's feedback on each of ``rows`` that has some, by message id (one query)."""
    replies = [row.pk for row in rows if row.role == ConversationMessage.Role.AI]
    if not replies:
        return {}
    given = MessageFeedback.objects.filter(message_id__in=replies, user_id=thread["user_id"])
    if thread["user_id"] is None:
        given = given.filter(visitor_key=thread["visitor_key"])
    return {feedback.message_id: as_protocol(feedback) for feedback in given}


def prompt_context(reply: ConversationMessage, limit: int | None = None) -> list[ConversationMessage]:
    """The stored messages the model was sent before ``reply``, oldest first: the complete
    messages of its branch above it (of its thread before it, in a thread that never branched),
    at most ``limit`` (``PYHUB_AI_HISTORY_MAX_MESSAGES``). The system prompt is not stored."""
    limit = limit or conf.HISTORY_MAX_MESSAGES
    thread = {"conversation_id": reply.conversation_id, "user_id": reply.user_id, "visitor_key": reply.visitor_key}
    branched, _ = branches.branch_state(locks.thread_key(*thread.values()), thread)
    complete = ConversationMessage.objects.filter(status=ConversationMessage.Status.COMPLETE)
    if branched:
        if reply.parent_id is None:
            return []
        walked = statements.walk_branch(reply.parent_id, *thread.values(), counted="status", value=ConversationMessage.Status.COMPLETE, limit=limit)
        ids = [pk for pk, _, status, _ in walked if status == ConversationMessage.Status.COMPLETE]
        return list(complete.filter(pk__in=ids).order_by("pk"))
    return list(complete.filter(**thread, pk__lt=reply.pk).order_by("-pk")[:limit])[::-1]


def export_records(feedback: QuerySet[MessageFeedback]) -> Iterator[dict[str, Any]]:
    """One JSON Lines record per feedback: the rating and comment, who gave it, the reply as
    the page shows it and as stored (codec form), and its prompt context (stored form)."""
    for item in feedback.select_related("user").order_by("pk").iterator():
        reply = ConversationMessage.objects.filter(pk=item.message_id).first()
        if reply is None:  # the message was deleted on its own
            continue
        yield {
            "record": "feedback",
            "id": item.pk,
            "conversation": item.conversation_id,
            "user": item.user.get_username() if item.user_id else None,
            "rating": RATING_NAMES[item.rating],
            "comment": item.comment,
            "created_at": item.created_at.isoformat(),
            "updated_at": item.updated_at.isoformat(),
            "message": {**message_object(reply), "content": reply.content},
            "context": [{"id": row.pk, "role": row.role, "content": row.content} for row in prompt_context(reply)],
        }
