"""Feedback on replies: the ``feedback`` frame (docs/protocol.md, 1.2)."""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.utils.translation import gettext

from .. import feedback
from ..branches import UnknownMessage
from .protocol import FrameError


class FeedbackMixin:
    """Stores a thumbs up or down (and a comment) on a reply of the connection's thread.

    ``give_feedback()`` is called by the consumer for a ``feedback`` frame; it stores the
    feedback (``pyhub_ai.feedback.set_feedback``) and sends every tab of the thread a
    ``feedback`` frame; ``on_feedback()`` is called after, to act on it.
    """

    async def give_feedback(self, message_id: int, rating: str | None, comment: str = "") -> None:
        history = self.history
        thread = {"conversation_id": self.conversation.pk, "user_id": history.user_id, "visitor_key": history.visitor_key}
        try:
            given = await sync_to_async(feedback.set_feedback)(thread, message_id, rating, comment)
        except UnknownMessage:
            raise FrameError("not_found", gettext("This message does not exist."), f"message {message_id} is not in this thread") from None
        await self.send_turn_frame("feedback", message_id=message_id, feedback=given)
        await self.on_feedback(message_id, given)

    async def on_feedback(self, message_id: int, given: dict | None) -> None:
        """Called after feedback on the reply ``message_id`` was stored (``None``: removed);
        override to act on it. Default: nothing."""
