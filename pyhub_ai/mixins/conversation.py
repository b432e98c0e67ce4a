"""Who is connected, which conversation they opened, and whose thread of it they see."""
from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django.contrib.auth.models import AnonymousUser

from ..conf import conf
from ..history import DjangoChatMessageHistory
from ..models import Conversation

#: URL route kwargs searched by ``get_conversation_pk()``, in order.
CONVERSATION_PK_KWARGS = ("conversation_pk", "conversation_id", "pk", "id")


class ConversationMixin:
    """Finds the conversation of a connection and decides who may use it.

    Hook order at connect (called by ``BaseAgentChatConsumer.connect``): ``can_accept()``,
    then ``aget_conversation()`` (which calls ``get_conversation_pk()``), then
    ``can_access_conversation()``. ``get_history()`` then gives the thread's storage.
    """

    scope: dict[str, Any]
    conversation: Conversation | None = None
    history_max_messages: int | None = None
    history_max_tokens: int | None = None
    _visitor_key: str | None = None

    def get_user(self) -> Any:
        """The connected user (``AnonymousUser`` when the scope has none)."""
        return self.scope.get("user") or AnonymousUser()

    async def can_accept(self) -> bool:
        """Whether to accept this websocket. Default: signed-in users only.

        Override and return ``True`` to let anonymous visitors chat; each gets a private
        thread keyed by their session.
        """
        return bool(self.get_user().is_authenticated)

    def get_conversation_pk(self) -> str | None:
        """The conversation pk from the URL route kwargs, as a string, or ``None``.

        Looks for ``conversation_pk``, ``conversation_id``, ``pk`` and ``id``, in that order.
        """
        kwargs = self.scope.get("url_route", {}).get("kwargs", {})
        for name in CONVERSATION_PK_KWARGS:
            if kwargs.get(name) is not None:
                return str(kwargs[name])
        return None

    async def aget_conversation(self) -> Conversation | None:
        """The conversation for ``get_conversation_pk()``, or ``None`` if there is none.

        Override to find the conversation another way. Access is checked afterwards by
        ``can_access_conversation()``, whatever this returns.
        """
        pk = self.get_conversation_pk()
        if pk is None:
            return None
        try:
            return await Conversation.objects.aget(pk=pk)
        except (Conversation.DoesNotExist, ValueError):
            return None

    async def can_access_conversation(self, conversation: Conversation) -> bool:
        """Whether the connected visitor may read and write ``conversation``.

        An owned conversation is its owner's only; an owner-less one is open to everyone
        ``can_accept()`` let in, each in a private thread.
        """
        if conversation.user_id is None:
            return True
        user = self.get_user()
        return bool(user.is_authenticated and user.pk == conversation.user_id)

    def get_visitor_key(self) -> str:
        """For anonymous visitors: a hash of the session key, which keys their private thread.

        Empty for signed-in users. The raw session key is never stored. A visitor with no
        session (no cookie yet) gets a key of their own for this connection only, so no two
        anonymous visitors ever share a thread.
        """
        if self.get_user().is_authenticated:
            return ""
        if self._visitor_key is None:
            session_key = getattr(self.scope.get("session"), "session_key", None) or uuid.uuid4().hex
            self._visitor_key = hashlib.sha256(f"pyhub_ai:{session_key}".encode()).hexdigest()
        return self._visitor_key

    def get_history_max_messages(self) -> int:
        """How many stored messages (at most) go into a prompt.

        ``history_max_messages``, else the ``PYHUB_AI_HISTORY_MAX_MESSAGES`` setting.
        """
        return self.history_max_messages or conf.HISTORY_MAX_MESSAGES

    def get_history_max_tokens(self) -> int | None:
        """The history's token budget in a prompt (``None``: no budget).

        ``history_max_tokens``, else the ``PYHUB_AI_HISTORY_MAX_TOKENS`` setting.
        """
        return self.history_max_tokens or conf.HISTORY_MAX_TOKENS

    def get_history(self) -> DjangoChatMessageHistory:
        """The storage of the connected visitor's thread of ``self.conversation``."""
        return DjangoChatMessageHistory(
            conversation=self.conversation,
            user=self.get_user(),
            visitor_key=self.get_visitor_key(),
            max_messages=self.get_history_max_messages(),
            max_tokens=self.get_history_max_tokens(),
            include_failed=conf.HISTORY_INCLUDE_FAILED,
        )

    async def aget_previous_messages(self) -> list:
        """The thread's stored messages that go into the next prompt, oldest first."""
        return await self.get_history().aget_messages()
