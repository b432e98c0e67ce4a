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

#: The hooks ``conversation_refusal()`` stands for (``can_check_conversation_in_turn``).
_CONVERSATION_HOOKS = ("check_access", "check_conversation_access", "aget_conversation", "get_conversation_pk", "can_access_conversation", "get_permissions")
#: Conversation checks that return without waiting for anything (``_result_of`` can run them).
_NON_WAITING_CHECKS = frozenset({BasePermission.has_conversation_permission, IsConversationParticipant.has_conversation_permission})


def _result_of(coroutine: Any) -> Any:
    """The result of a coroutine that never waits (one of ``_NON_WAITING_CHECKS``), run here."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value
    coroutine.close()
    raise RuntimeError("a conversation check that waits cannot run in a database call")


class ConversationMixin:
    """Finds the conversation of a connection and decides who may use it.

    ``check_access()`` (called by the consumer at connect, for every client frame and for the
    turn frames relayed from other tabs) calls ``has_current_session()`` (not at connect),
    then ``can_accept()``, then ``aget_conversation()`` (which calls ``get_conversation_pk()``),
    then ``can_access_conversation()``; the default ``can_*`` hooks ask the policies in
    ``permission_classes``. For a ``user_message`` that starts a turn, the consumer checks the
    conversation in the turn's first database call instead (``conversation_refusal()``), when
    ``can_check_conversation_in_turn()``. ``get_history()`` then gives the thread's storage (``history``: the
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

    async def check_access(self, *, recheck_session: bool = True, conversation: bool = True) -> int | None:
        """Run the access hooks; return the close code of a refusal, or ``None`` (and set
        ``self.conversation``) when the visitor may use the conversation.

        ``recheck_session=False`` skips ``has_current_session()``: the consumer passes it at
        connect, where the auth middleware has just read the session. ``conversation=False``
        stops after ``can_accept()``: the consumer then checks the conversation itself, with
        ``check_conversation_access()`` or, for a turn, in the turn's first database call
        (``conversation_refusal()``).
        """
        self._refused_by = None
        if recheck_session and not await self.has_current_session():
            return CLOSE_NOT_SIGNED_IN
        if not await self.can_accept():
            if self._refused_by is not None:
                return self._refused_by.close_code
            return CLOSE_FORBIDDEN if self.get_user().is_authenticated else CLOSE_NOT_SIGNED_IN
        return await self.check_conversation_access() if conversation else None

    async def check_conversation_access(self) -> int | None:
        """The last part of ``check_access()``: ``aget_conversation()``, then
        ``can_access_conversation()``; ``CLOSE_FORBIDDEN`` or ``None`` (``self.conversation``
        set)."""
        conversation = await self.aget_conversation()
        if conversation is None or not await self.can_access_conversation(conversation):
            return CLOSE_FORBIDDEN
        self.conversation = conversation
        return None

    def can_check_conversation_in_turn(self) -> bool:
        """Whether ``conversation_refusal()`` decides exactly what ``check_conversation_access()``
        would: the consumer keeps this mixin's access hooks and permission checks
        (``permission_classes`` may be any of ``pyhub_ai.permissions``' classes, whose
        conversation checks never wait). Then the chat consumer checks the conversation of a
        ``user_message`` frame in the database call that starts its turn: one hand-off to the
        database thread less per turn (a hand-off and this query cost the two threads about
        0.1 ms of CPU together, measured on SQLite, 2026-11-30)."""
        cls = type(self)
        return (
            all(getattr(cls, name) is getattr(ConversationMixin, name) for name in _CONVERSATION_HOOKS)
            and all(type(permission).has_conversation_permission in _NON_WAITING_CHECKS for permission in self.get_permissions())
        )

    def conversation_refusal(self) -> int | None:
        """``check_conversation_access()`` in the calling thread, for a consumer where
        ``can_check_conversation_in_turn()``: synchronous, for the database call that starts a
        turn (``ChatMixin.run_turn``)."""
        pk = self.get_conversation_pk()
        try:
            conversation = statements.conversation(pk) if pk is not None else None
        except ValueError:
            conversation = None
        if conversation is None or not all(
            _result_of(permission.has_conversation_permission(self, conversation)) for permission in self.get_permissions()
        ):
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
