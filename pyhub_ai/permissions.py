"""Who may use a chat consumer and its conversation: policy classes, as in Django REST framework.

A consumer lists them in ``permission_classes``. At connect, and again for every frame the
client sends (after ``ConversationMixin.has_current_session()``), ``has_permission()``
decides whether the visitor may use the consumer at all and ``has_conversation_permission()``
whether they may read and write this conversation (fetched afresh for each frame; for a
message that starts a turn, in the turn's first database call, where these classes' checks run
as they are: none of them waits for anything). All must allow; the first refusal closes the socket with 4401
(anonymous visitor) or 4403 (the same code for "not yours" and "no such conversation").
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Conversation


class BasePermission:
    """Allows everything; subclasses override one or both checks. ``close_code`` is what a
    refusal by ``has_permission()`` closes the socket with."""

    close_code = 4403

    async def has_permission(self, consumer: Any) -> bool:
        return True

    async def has_conversation_permission(self, consumer: Any, conversation: Conversation) -> bool:
        return True


class AllowAny(BasePermission):
    """Anyone, signed in or not (anonymous visitors get private threads keyed by their session)."""


class IsAuthenticated(BasePermission):
    """Signed-in users. (Whether their session still signs them in — after signing out
    elsewhere, a password change — is checked for every consumer, whatever its permissions,
    by ``ConversationMixin.has_current_session()``.)"""

    close_code = 4401

    async def has_permission(self, consumer: Any) -> bool:
        return consumer.get_user().is_authenticated


class IsConversationParticipant(BasePermission):
    """An owned conversation is its owner's only; an owner-less one is open to every visitor the
    other permissions admit, each in a private thread."""

    async def has_conversation_permission(self, consumer: Any, conversation: Conversation) -> bool:
        if conversation.user_id is None:
            return True
        user = consumer.get_user()
        return bool(user.is_authenticated and user.pk == conversation.user_id)
