"""Who is connected, which conversation they opened, and whose thread of it they see."""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser

from .. import statements
from ..conf import conf
from ..history import DjangoChatMessageHistory
from ..models import Conversation
from ..permissions import BasePermission, IsAuthenticated, IsConversationParticipant
from ..sessions import is_session_current
from .protocol import CLOSE_FORBIDDEN, CLOSE_NOT_SIGNED_IN

_read_conversation = sync_to_async(statements.conversation)

#: URL route kwargs searched by ``get_conversation_pk()``, in order.
CONVERSATION_PK_KWARGS = ("conversation_pk", "conversation_id", "pk", "id")


class ConversationMixin:
    """Finds the conversation of a connection and decides who may use it.

    ``check_access()`` (called by the consumer at connect, for every client frame and for the
    turn frames relayed from other tabs) calls ``has_current_session()`` (not at connect),
    then ``can_accept()``, then ``aget_conversation()`` (which calls ``get_conversation_pk()``),
    then ``can_access_conversation()``; the default ``can_*`` hooks ask the policies in
    ``permission_classes``. ``get_history()`` then gives the thread's storage (``history``: the
    connection's, built once).
    """

    scope: dict[str, Any]
    permission_classes: Sequence[type[BasePermission]] = (IsAuthenticated, IsConversationParticipant)
    conversation: Conversation | None = None
    history_max_messages: int | None = None
    history_max_tokens: int | None = None
    _visitor_key: str | None = None
    _refused_by: BasePermission | None = None
    _history: DjangoChatMessageHistory | None = None

    def get_user(self) -> Any:
        """The connected user (``AnonymousUser`` when the scope has none)."""
        return self.scope.get("user") or AnonymousUser()

    def get_permissions(self) -> list[BasePermission]:
        """Instances of ``permission_classes`` (a fresh list for each check)."""
        return [permission() for permission in self.permission_classes]

    async def can_accept(self) -> bool:
        """Whether the visitor may use this consumer. Default: every permission's
        ``has_permission()`` (signed-in users only, with the default ``IsAuthenticated``).

        Override and return ``True`` to let anonymous visitors chat; each gets a private
        thread keyed by their session.
        """
        for permission in self.get_permissions():
            if not await permission.has_permission(self):
                self._refused_by = permission
                return False
        return True

    async def has_current_session(self) -> bool:
        """Whether a signed-in visitor's session still signs them in (``pyhub_ai.sessions``):
        not signed out, password unchanged, still active. Always ``True`` for anonymous visitors.

        Called by ``check_access()`` before ``can_accept()``, so a consumer whose
        ``can_accept()`` returns ``True`` stops acting as a user who signed out too.
        """
        return await is_session_current(self.scope)

    async def check_access(self, *, recheck_session: bool = True) -> int | None:
        """Run the access hooks; return the close code of a refusal, or ``None`` (and set
        ``self.conversation``) when the visitor may use the conversation.

        ``recheck_session=False`` skips ``has_current_session()``: the consumer passes it at
        connect, where the auth middleware has just read the session.
        """
        self._refused_by = None
        if recheck_session and not await self.has_current_session():
            return CLOSE_NOT_SIGNED_IN
        if not await self.can_accept():
            if self._refused_by is not None:
                return self._refused_by.close_code
            return CLOSE_FORBIDDEN if self.get_user().is_authenticated else CLOSE_NOT_SIGNED_IN
        conversation = await self.aget_conversation()
        if conversation is None or not await self.can_access_conversation(conversation):
            return CLOSE_FORBIDDEN
        self.conversation = conversation
        return None

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
            return await _read_conversation(pk)  # Conversation.objects.aget(pk=pk), without building a query
        except ValueError:
            return None

    async def can_access_conversation(self, conversation: Conversation) -> bool:
        """Whether the connected visitor may read and write ``conversation``. Default: every
        permission's ``has_conversation_permission()`` (with the default
        ``IsConversationParticipant``: an owned conversation is its owner's only; an owner-less
        one is open to everyone ``can_accept()`` let in, each in a private thread).
        """
        for permission in self.get_permissions():
            if not await permission.has_conversation_permission(self, conversation):
                return False
        return True

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

    @property
    def history(self) -> DjangoChatMessageHistory:
        """This connection's ``get_history()``, built once: it remembers the messages it has
        decoded, so each turn decodes only the new ones."""
        if self._history is None:
            self._history = self.get_history()
        return self._history

    async def aget_previous_messages(self) -> list:
        """The thread's stored messages that go into the next prompt, oldest first."""
        return await self.history.aget_messages()
