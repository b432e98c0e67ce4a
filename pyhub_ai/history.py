"""``DjangoChatMessageHistory``: LangChain's chat-history interface over pyhub_ai's models.

It is the one storage path: ``RunnableWithMessageHistory`` chains use it exactly like
LangChain's Redis or DynamoDB histories, and the chat consumers use it for every turn.

A history addresses one *thread* (see ``pyhub_ai.models``): a conversation, given directly or
by an arbitrary ``session_id`` string, plus the ``user`` or anonymous ``visitor_key`` whose
thread it is. The constructor does no database work, because LangChain calls the history
factory synchronously, even inside async chains.
"""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.utils import timezone
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    BaseMessageChunk,
    HumanMessage,
    ToolMessage,
    message_chunk_to_message,
)

from . import branches, codec, ledger, locks, statements
from .conf import conf
from .models import Conversation, ConversationMessage, ThreadBranch
from .tokens import count_tokens

logger = logging.getLogger(__name__)

Status = ConversationMessage.Status


class ThreadAlreadyStarted(Exception):
    """A conversation starter found the thread no longer empty (another tab started it)."""


class DuplicateMessage(Exception):
    """A message with this idempotency key is already stored in the thread (``existing``)."""

    def __init__(self, existing: ConversationMessage) -> None:
        super().__init__(f"message #{existing.pk} has this idempotency key")
        self.existing = existing


@dataclass
class Turn:
    """One user turn while it runs: the stored human message, the AI placeholder, the
    thread's messages before the turn (the prompt's history), the thread lock's lease
    the turn holds (released when the reply is stored), the model call running now
    (``call``, set by the consumer; stored in the usage ledger with the call's reply), and the
    reply message once the consumer has stored it in ``ai`` (``reply``)."""

    turn_id: uuid.UUID
    human: ConversationMessage
    ai: ConversationMessage
    previous_messages: list[BaseMessage] = field(default_factory=list)
    lease: locks.Lease | None = None
    call: ledger.ModelCall | None = None
    reply: BaseMessage | None = None


class DjangoChatMessageHistory(BaseChatMessageHistory):
    """Chat history stored in ``Conversation`` / ``ConversationMessage`` rows.

    Give either ``session_id`` (a conversation with that key is created on the first write)
    or ``conversation`` (an instance or a pk). ``user`` or ``visitor_key`` selects whose thread
    of an owner-less conversation this is.

    ``max_messages`` and ``max_tokens`` window what ``messages`` returns: the newest messages
    that fit both, oldest first, read with one indexed query whose cost does not grow with the
    thread. The window starts on a human message where it can, so it never begins with a
    tool result cut off from its call, nor splits a tool call from its results. ``None`` for
    both returns the whole thread. Failed or interrupted replies are left out unless
    ``include_failed``.

    Once the thread has branched (an edit or a regenerated reply, ``pyhub_ai.branches``), the
    window, the pages and ``add_messages`` follow the branch the thread shows: the window is
    read up the ``parent`` links of that branch, with one bounded recursive query.
    """

    def __init__(
        self,
        session_id: str | None = None,
        *,
        conversation: Conversation | int | str | None = None,
        user: Any = None,
        visitor_key: str = "",
        max_messages: int | None = None,
        max_tokens: int | None = None,
        include_failed: bool = False,
    ) -> None:
        if (session_id is None) == (conversation is None):
            raise TypeError("DjangoChatMessageHistory needs exactly one of session_id or conversation.")
        self.session_id = session_id
        self._conversation_id = conversation.pk if isinstance(conversation, Conversation) else conversation
        self.user_id = getattr(user, "pk", None) if user is not None and user.is_authenticated else None
        self.visitor_key = "" if self.user_id else visitor_key
        self.max_messages = max_messages
        self.max_tokens = max_tokens
        self.include_failed = include_failed
        self._decoded: dict[int, BaseMessage | None] = {}

    # -- LangChain's interface -------------------------------------------------------------

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        conversation_id = self._conversation_id or self._find_conversation_id()
        if conversation_id is None:
            return []
        return self._read_window(conversation_id)

    async def aget_messages(self) -> list[BaseMessage]:
        return await sync_to_async(lambda: self.messages)()

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store ``messages`` as complete, in one bulk insert (at the end of the branch shown,
        in a thread that has branched)."""
        conversation_id = self._conversation_id or self._get_or_create_conversation_id()
        self._insert(conversation_id, self._rows(conversation_id, messages))
        if conf.CONVERSATION_TTL:
            Conversation.objects.filter(pk=conversation_id).update(**_activity_fields())

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        conversation_id = self._conversation_id or await self._aget_or_create_conversation_id()
        await sync_to_async(self._insert)(conversation_id, self._rows(conversation_id, messages))
        if conf.CONVERSATION_TTL:
            await Conversation.objects.filter(pk=conversation_id).aupdate(**_activity_fields())

    def clear(self) -> None:
        """Delete this thread's messages, every branch (other users' threads are kept)."""
        conversation_id = self._conversation_id or self._find_conversation_id()
        if conversation_id is not None:
            self._thread_queryset(conversation_id).delete()
            ThreadBranch.objects.filter(key=self._key(conversation_id)).delete()

    async def aclear(self) -> None:
        conversation_id = self._conversation_id or await self._afind_conversation_id()
        if conversation_id is not None:
            await self._thread_queryset(conversation_id).adelete()
            await ThreadBranch.objects.filter(key=self._key(conversation_id)).adelete()

    # -- What the chat consumers need beyond LangChain's interface ---------------------------

    async def aget_page(self, before: int | None = None, limit: int | None = None) -> tuple[list[ConversationMessage], bool]:
        """One page of visible rows for display, oldest first, older than ``before`` (an id).

        Cursor-paginated on the primary key (no OFFSET). Returns ``(rows, has_more)``.
        """
        limit = limit or conf.HISTORY_PAGE_SIZE
        conversation_id = self._conversation_id or await self._afind_conversation_id()
        if conversation_id is None:
            return [], False
        page = await sync_to_async(self._branch_page)(conversation_id, before, limit)
        if page is not None:
            rows, has_more = page
        else:
            queryset = self._thread_queryset(conversation_id).filter(visible=True)
            if before is not None:
                queryset = queryset.filter(pk__lt=before)
            rows = [row async for row in queryset.order_by("-pk")[: limit + 1]]
            has_more = len(rows) > limit
            rows = rows[:limit][::-1]
        streaming = [row for row in rows if row.status == Status.STREAMING]
        if streaming and not await locks.is_locked(self.thread_key):
            await self.amark_abandoned()
            for row in streaming:
                row.status = Status.INTERRUPTED
        return rows, has_more

    def _branch_page(self, conversation_id: Any, before: int | None, limit: int) -> tuple[list[ConversationMessage], bool] | None:
        """``aget_page()`` in a thread that has branched: the visible rows of the branch shown,
        above ``before`` (a message of that branch); ``None`` in a thread that never branched."""
        thread = self._thread_fields(conversation_id)
        branched, leaf = branches.branch_state(self._key(conversation_id), thread)
        if not branched:
            return None
        if before is not None:
            leaf = self._thread_queryset(conversation_id).filter(pk=before).values_list("parent_id", flat=True).first()
        if leaf is None:
            return [], False
        walked = statements.walk_branch(leaf, conversation_id, self.user_id, self.visitor_key, counted="visible", value=True, limit=limit + 1)
        ids = [pk for pk, _, _, visible in walked if visible]
        rows = list(ConversationMessage.objects.filter(pk__in=ids[:limit]).order_by("pk"))
        return rows, len(ids) > limit

    def get_versions(self, rows: Sequence[ConversationMessage]) -> dict[int, list[int]]:
        """For each of ``rows`` (a page) that has other versions (an edit, a regenerated reply):
        the ids of all its versions, oldest first; nothing in a thread that never branched."""
        if not rows or self._conversation_id is None:
            return {}
        thread = self._thread_fields(self._conversation_id)
        branched, _ = branches.branch_state(self._key(self._conversation_id), thread)
        return branches.siblings(thread, rows) if branched else {}

    async def aget_versions(self, rows: Sequence[ConversationMessage]) -> dict[int, list[int]]:
        return await sync_to_async(self.get_versions)(rows)

    def switch_branch(self, message_id: int) -> None:
        """Show the branch through the version ``message_id`` of a message (raises
        ``branches.UnknownMessage`` if it is not a visible message of this thread)."""
        conversation_id = self._conversation_id or self._find_conversation_id()
        if conversation_id is None:
            raise branches.UnknownMessage(message_id)
        branches.switch_to(self._key(conversation_id), self._thread_fields(conversation_id), message_id)

    async def aswitch_branch(self, message_id: int) -> None:
        await sync_to_async(self.switch_branch)(message_id)

    @property
    def thread_key(self) -> str:
        """The key of this thread's turn lock (``pyhub_ai.locks``); needs a known conversation."""
        if self._conversation_id is None:
            raise ValueError("The conversation of this history is not known yet.")
        return locks.thread_key(self._conversation_id, self.user_id, self.visitor_key)

    def mark_abandoned(self) -> None:
        """Mark replies left ``streaming`` by a worker that died mid-turn as ``interrupted``.

        Called when a page shows such a reply and no live turn holds the thread, and when a
        turn takes over the lock of a dead one (``start_turn``).
        """
        self._thread_queryset(self._conversation_id).filter(status=Status.STREAMING).update(status=Status.INTERRUPTED)

    async def amark_abandoned(self) -> None:
        await sync_to_async(self.mark_abandoned)()

    async def asave_partial(self, turn: Turn, text: str) -> None:
        """Save the reply streamed so far (still ``streaming``), so a crash loses at most the
        text since the last save."""
        turn.ai.content = codec.encode(AIMessage(content=text))
        await sync_to_async(statements.update_message)(
            turn.ai.pk, content=turn.ai.content, status=Status.STREAMING, token_count=turn.ai.token_count
        )

    def has_messages(self) -> bool:
        """Whether this thread has any stored message at all (hidden ones included).

        The chat consumer asks it in the transaction that takes the thread's lock before it
        stores a conversation starter, so a thread is started once (``ChatMixin.run_turn``).
        """
        conversation_id = self._conversation_id or self._find_conversation_id()
        if conversation_id is None:
            return False
        return self._thread_queryset(conversation_id).exists()

    async def ahas_messages(self) -> bool:
        return await sync_to_async(self.has_messages)()

    def start_turn(
        self,
        human_message: HumanMessage | None,
        *,
        visible: bool = True,
        idempotency_key: str = "",
        lease: locks.Lease | None = None,
        edit_of: int | None = None,
        regenerate: int | None = None,
    ) -> Turn:
        """Read the prompt's history, then store the human message and an empty ``streaming``
        AI placeholder, in one insert. Synchronous: the chat consumer runs it in the database
        call that takes the thread's lock (``lease``, see ``locks.thread_lock``); a lease that
        took over a dead turn's lock first marks that turn's reply ``interrupted``.

        The human message is stored before the model is called, so it is never lost. If the
        thread already has a message with ``idempotency_key``, nothing is stored and
        ``DuplicateMessage`` is raised.

        Branches (``pyhub_ai.branches``): with ``edit_of`` (the id of a visible human message of
        this thread) ``human_message`` is stored as a new version of that message, and the
        prompt is the branch above it; with ``regenerate`` (the id of a reply) no human message
        is stored: the reply gets a new version, answering the same human message (the turn's
        ``human``) from the branch above it. Both raise ``branches.UnknownMessage`` for an id
        that is not a visible message of this thread.
        """
        conversation_id = self._conversation_id or self._get_or_create_conversation_id()
        if lease is not None and lease.took_over:
            self.mark_abandoned()
        thread, key = self._thread_fields(conversation_id), self._key(conversation_id)
        turn_id = uuid.uuid4()
        previous_messages = None
        if edit_of is None and regenerate is None:
            branched, parent, previous_messages = self._turn_window(conversation_id, key, thread)
        else:
            branched, parent = True, branches.make_branched(key, thread)
        if regenerate is not None:
            answered = branches.human_of(thread, branches.thread_row(thread, regenerate, role=ConversationMessage.Role.AI))
            turn_id = answered.turn_id or turn_id
            ai = ConversationMessage.from_message(
                AIMessage(content=""), turn_id=turn_id, status=Status.STREAMING, parent_id=answered.pk, **thread
            )
            previous_messages = self._window(conversation_id, True, answered.parent_id)
            ConversationMessage.objects.bulk_create([ai])
            return Turn(turn_id=turn_id, human=answered, ai=ai, previous_messages=previous_messages, lease=lease)
        if edit_of is not None:
            parent = branches.thread_row(thread, edit_of, role=ConversationMessage.Role.HUMAN).parent_id
        if previous_messages is None:
            previous_messages = self._window(conversation_id, branched, parent)
        human = ConversationMessage.from_message(
            human_message, turn_id=turn_id, visible=visible, idempotency_key=idempotency_key,
            parent_id=parent if branched else None, **thread
        )
        ai = ConversationMessage.from_message(AIMessage(content=""), turn_id=turn_id, status=Status.STREAMING, **thread)
        if not branched and not idempotency_key:
            statements.insert_messages([human, ai])  # one INSERT: both rows or neither
        elif branched or not self._insert_unless_duplicate([human, ai]):
            try:
                with transaction.atomic():  # in a caller's transaction, a savepoint: a duplicate leaves it usable
                    statements.insert_messages([human, ai])
                    if branched:
                        branches.link([human, ai], parent)
            except IntegrityError:
                if not idempotency_key:
                    raise
                existing = self._thread_queryset(conversation_id).get(idempotency_key=idempotency_key)
                raise DuplicateMessage(existing) from None
        return Turn(turn_id=turn_id, human=human, ai=ai, previous_messages=previous_messages, lease=lease)

    def _insert_unless_duplicate(self, rows: list[ConversationMessage]) -> bool:
        """Called by ``start_turn`` for a message with an idempotency key: insert ``rows`` with one
        statement that leaves out a duplicate (``statements.insert_messages``), instead of a
        savepoint around the insert (three statements). ``True`` when they are inserted, ``False``
        when the database cannot do it this way (the caller then inserts them within a savepoint);
        raises ``DuplicateMessage`` when the thread has the message already (nothing is kept)."""
        ids = statements.insert_messages(rows, skip_duplicates=True)
        if ids is None:
            return False
        if len(ids) < len(rows):
            if ids:
                statements.delete_messages(ids)
            human = rows[0]
            existing = self._thread_queryset(human.conversation_id).get(idempotency_key=human.idempotency_key)
            raise DuplicateMessage(existing)
        return True

    def resume_turn(self, *, lease: locks.Lease | None = None) -> Turn | None:
        """The turn whose reply is the thread's newest message, to be continued (a LangGraph
        graph that paused for an approval, ``GraphMixin``): its human message, and as ``ai`` that
        reply when it is a step calling tools (the step a resumed graph completes with their
        results), else a new ``streaming`` placeholder after it. ``None`` when the thread has
        no reply. Synchronous: run it in the database call that takes the thread's lock."""
        conversation_id = self._conversation_id or self._find_conversation_id()
        if conversation_id is None:
            return None
        thread = self._thread_fields(conversation_id)
        last = self._thread_queryset(conversation_id).filter(role=ConversationMessage.Role.AI).order_by("-pk").first()
        if last is None or last.turn_id is None:
            return None
        human = self._thread_queryset(conversation_id).filter(turn_id=last.turn_id, role=ConversationMessage.Role.HUMAN).order_by("-pk").first()
        if human is None:
            return None
        ai = last
        if not getattr(last.message, "tool_calls", None):
            ai = ConversationMessage.from_message(AIMessage(content=""), turn_id=last.turn_id, status=Status.STREAMING, **thread)
            with transaction.atomic():
                ConversationMessage.objects.bulk_create([ai])
                if last.parent_id is not None:
                    branches.link([ai], last.pk)
        return Turn(turn_id=last.turn_id, human=human, ai=ai, lease=lease)

    async def aadd_tool_step(self, turn: Turn, ai_message: AIMessage, tool_messages: Sequence[ToolMessage]) -> list[ConversationMessage]:
        """Store one finished tool-calling step of a turn, all at once: the AI message that
        called the tools (complete), their results, and a new ``streaming`` placeholder that
        becomes ``turn.ai`` for the model's next step. Returns the stored tool rows.

        Storing a step only once its tools have answered keeps every stored tool call next to
        its results: an interrupted step is stored as ``interrupted``, outside the window.
        """
        step, thread = turn.ai, self._thread_fields(turn.ai.conversation_id)
        tool_rows = [ConversationMessage.from_message(message, turn_id=turn.turn_id, **thread) for message in tool_messages]
        turn.ai = ConversationMessage.from_message(AIMessage(content=""), turn_id=turn.turn_id, status=Status.STREAMING, **thread)
        call, turn.call = turn.call, None
        await sync_to_async(_store_reply)(step, ai_message, Status.COMPLETE, new_rows=[*tool_rows, turn.ai], call=call)
        return tool_rows

    def finish_turn(self, turn: Turn, ai_message: AIMessage, status: str = Status.COMPLETE, *, release: bool = True) -> None:
        """Store the AI reply (complete, or the partial text with an error/interrupted status),
        add its token usage to the conversation's totals, record the model call in the usage
        ledger (``turn.call``, if any) and release the turn's lease (unless ``release`` is
        false: the caller's ``thread_lock`` releases it), in one transaction."""
        call, turn.call = turn.call, None
        _store_reply(turn.ai, ai_message, status, release=turn.lease if release else None, call=call)
        self._remember(turn.human, turn.ai)

    async def afinish_turn(self, turn: Turn, ai_message: AIMessage, status: str = Status.COMPLETE, *, release: bool = True) -> None:
        await sync_to_async(self.finish_turn)(turn, ai_message, status, release=release)

    # -- Queries ----------------------------------------------------------------------------

    def _thread_fields(self, conversation_id: Any) -> dict[str, Any]:
        return {"conversation_id": conversation_id, "user_id": self.user_id, "visitor_key": self.visitor_key}

    def _thread_queryset(self, conversation_id: Any):
        return ConversationMessage.objects.filter(**self._thread_fields(conversation_id))

    def _read_window(self, conversation_id: Any) -> list[BaseMessage]:
        """The window of the branch the thread shows (see ``_window``)."""
        branched, leaf = branches.branch_state(self._key(conversation_id), self._thread_fields(conversation_id))
        return self._window(conversation_id, branched, leaf)

    def _window(self, conversation_id: Any, branched: bool, leaf: int | None) -> list[BaseMessage]:
        """The window's messages, oldest first: the thread's newest rows or, once it has
        branched (``pyhub_ai.branches``), those of the branch ending at ``leaf``.

        A history object remembers the messages it has decoded (``_decoded``, by row id, the
        current window's only): once it has read the window, each later read fetches just the
        ids and token counts of the window, then the rows it has not decoded yet (a turn adds
        two). A stored row no longer changes once it has left ``streaming``; rows still
        ``streaming`` are decoded on every read. Reads share the message objects: callers
        must not modify them.
        """
        if branched:
            return self._window_of(self._branch_ids(conversation_id, leaf))
        if self._decoded:
            newest_first = statements.window_ids(
                conversation_id, self.user_id, self.visitor_key, complete_only=not self.include_failed, limit=self.max_messages
            )
            return self._window_of(newest_first)
        stored = statements.window_rows(
            conversation_id, self.user_id, self.visitor_key, complete_only=not self.include_failed, limit=self.max_messages
        )
        newest_first = [(pk, token_count) for pk, token_count, _, _ in stored]
        return self._window_of(newest_first, [(pk, content, status) for pk, _, content, status in stored])

    def _turn_window(self, conversation_id: Any, key: str, thread: dict[str, Any]) -> tuple[bool, int | None, list[BaseMessage]]:
        """``(branched, leaf, window)`` for ``start_turn``: the branch state and the window of
        the branch shown. Once this history has read the window (``_decoded``), a thread that
        never branched costs one statement returning one row (``statements.thread_window``),
        plus the contents of rows it has not decoded yet (none after a turn of its own:
        ``finish_turn`` remembers the turn's rows); its first read, two plain statements
        (``thread_branch``, ``window_rows``)."""
        found = None
        if self._decoded:
            found = statements.thread_window(
                key, conversation_id, self.user_id, self.visitor_key, complete_only=not self.include_failed, limit=self.max_messages
            )
        if found is None:
            branched, leaf = branches.branch_state(key, thread)
            return branched, leaf, self._window(conversation_id, branched, leaf)
        branch, newest_first = found
        branched, leaf = branches.state_of(branch)
        if branched:
            return branched, leaf, self._window(conversation_id, True, leaf)
        return False, None, self._window_of(newest_first)

    def _remember(self, *rows: ConversationMessage) -> None:
        """Keep the messages of ``rows`` just stored by this history (called by ``finish_turn``),
        decoded as a read of them would decode them, so the next window need not read them; rows
        still ``streaming`` are not kept (``_window``)."""
        if not self._decoded:  # the next window reads every row anyway
            return
        for row in rows:
            if row.pk is not None and row.status != Status.STREAMING:
                self._decoded[row.pk] = _decode_row(row.pk, json.dumps(row.content))

    def _window_of(self, newest_first: list[tuple[int, int]], rows: list[tuple[int, Any, str]] | None = None) -> list[BaseMessage]:
        """The window's messages, oldest first, of ``newest_first`` (``(id, token count)``
        pairs): decoded ones from ``_decoded``, the others from ``rows`` (``(id, content,
        status)``; read here when not given). Called by ``_window`` and ``_turn_window``."""
        if rows is None:
            unread = [pk for pk, _ in newest_first if pk not in self._decoded]
            rows = statements.message_contents(unread) if unread else []
        decoded = {pk: self._decoded[pk] for pk, _ in newest_first if pk in self._decoded}
        streaming = set()
        for pk, content, status in rows:
            decoded[pk] = _decode_row(pk, content)
            if status == Status.STREAMING:
                streaming.add(pk)
        self._decoded = {pk: message for pk, message in decoded.items() if pk not in streaming}
        if self.max_tokens is not None:
            newest_first = _within_budget(newest_first, self.max_tokens)
        messages = [decoded[pk] for pk, _ in reversed(newest_first) if decoded.get(pk) is not None]
        if self.max_messages is not None or self.max_tokens is not None:
            messages = _start_on_human(messages)
        return messages

    def _branch_ids(self, conversation_id: Any, leaf: int | None) -> list[tuple[int, int]]:
        """``(id, token count)`` of the window's rows on the branch ending at ``leaf``, newest first."""
        if leaf is None:
            return []
        complete_only = not self.include_failed
        walked = statements.walk_branch(
            leaf, conversation_id, self.user_id, self.visitor_key,
            counted="status" if complete_only else None, value=Status.COMPLETE, limit=self.max_messages,
        )
        return [(pk, tokens) for pk, tokens, status, _ in walked if not complete_only or status == Status.COMPLETE][: self.max_messages]

    def thread_fields(self) -> dict[str, Any]:
        """``conversation_id``, ``user_id`` and ``visitor_key`` of this thread (its conversation known)."""
        if self._conversation_id is None:
            raise ValueError("The conversation of this history is not known yet.")
        return self._thread_fields(self._conversation_id)

    def _key(self, conversation_id: Any) -> str:
        return locks.thread_key(conversation_id, self.user_id, self.visitor_key)

    def _insert(self, conversation_id: Any, rows: list[ConversationMessage]) -> None:
        """Insert ``rows`` after the thread's last message, or at the end of the branch shown."""
        branched, leaf = branches.branch_state(self._key(conversation_id), self._thread_fields(conversation_id))
        if not branched:
            ConversationMessage.objects.bulk_create(rows)
            return
        with transaction.atomic():
            if rows:
                rows[0].parent_id = leaf
            ConversationMessage.objects.bulk_create(rows)
            branches.link(rows, leaf)

    def _rows(self, conversation_id: Any, messages: Sequence[BaseMessage]) -> list[ConversationMessage]:
        """Unsaved rows; streamed chunks (``astream`` through a chain) are stored as messages."""
        thread = self._thread_fields(conversation_id)
        return [
            ConversationMessage.from_message(
                message_chunk_to_message(message) if isinstance(message, BaseMessageChunk) else message, **thread
            )
            for message in messages
        ]

    def _find_conversation_id(self) -> Any:
        pk = Conversation.objects.filter(session_id=self.session_id).values_list("pk", flat=True).first()
        self._conversation_id = pk
        return pk

    async def _afind_conversation_id(self) -> Any:
        pk = await Conversation.objects.filter(session_id=self.session_id).values_list("pk", flat=True).afirst()
        self._conversation_id = pk
        return pk

    def _get_or_create_conversation_id(self) -> Any:
        conversation, _ = Conversation.objects.get_or_create(session_id=self.session_id)
        self._conversation_id = conversation.pk
        return conversation.pk

    async def _aget_or_create_conversation_id(self) -> Any:
        conversation, _ = await Conversation.objects.aget_or_create(session_id=self.session_id)
        self._conversation_id = conversation.pk
        return conversation.pk


def _within_budget(newest_first: list[tuple[int, int]], max_tokens: int) -> list[tuple[int, int]]:
    """The newest ``(id, token count)`` pairs whose token counts add up to at most ``max_tokens``."""
    total = 0
    for index, (_, token_count) in enumerate(newest_first):
        total += token_count
        if total > max_tokens:
            return newest_first[:index]
    return newest_first


def _decode_row(pk: int, content: Any) -> BaseMessage | None:
    """The message stored in row ``pk``, or ``None`` (logged) when it cannot be read."""
    try:
        return codec.decode(content)
    except codec.CodecError:
        logger.warning("Skipping unreadable stored message #%s.", pk, exc_info=True)
        return None


def _start_on_human(messages: list[BaseMessage]) -> list[BaseMessage]:
    """Cut a window's head so it starts on a human message.

    Without a human message in the window, it starts on the first message that is not a tool
    result, so no tool result is ever sent without the call that asked for it.
    """
    for index, message in enumerate(messages):
        if isinstance(message, HumanMessage):
            return messages[index:]
    for index, message in enumerate(messages):
        if not isinstance(message, ToolMessage):
            return messages[index:]
    return []


def _store_reply(
    ai_row: ConversationMessage,
    ai_message: AIMessage,
    status: str,
    new_rows: Sequence[ConversationMessage] = (),
    release: locks.Lease | None = None,
    call: ledger.ModelCall | None = None,
) -> None:
    """Put ``ai_message`` into ``ai_row`` with ``status``: the row, any rows that follow it,
    the conversation's token totals, the ledger row of ``call`` (``pyhub_ai.ledger``) and the
    release of the lease ``release`` happen together or not at all."""
    ai_row.content, ai_row.status, ai_row.token_count = codec.encode(ai_message), status, count_tokens(ai_message)
    usage = ai_message.usage_metadata or {}
    activity = _activity_fields()
    with transaction.atomic():
        statements.update_message(ai_row.pk, content=ai_row.content, status=status, token_count=ai_row.token_count)
        if new_rows:
            ConversationMessage.objects.bulk_create(new_rows)
            if ai_row.parent_id is not None:  # a thread that has branched: the new rows follow ai_row
                branches.link(new_rows, ai_row.pk)
        statements.add_conversation_activity(
            ai_row.conversation_id,
            input_tokens=usage.get("input_tokens", 0),
            output_tokens=usage.get("output_tokens", 0),
            **activity,
        )
        if call is not None:
            now = activity["updated_at"]
            statements.insert_usage(ledger.record(call, ai_message, ai_row, now), [call.subject, ledger.SITE], ledger.day_of(now))
        if release is not None:
            locks.release(release)


def _activity_fields() -> dict[str, Any]:
    """``updated_at`` now, and ``expires_at`` pushed back when a conversation TTL is set."""
    now = timezone.now()
    ttl = conf.CONVERSATION_TTL
    return {"updated_at": now, **({"expires_at": now + ttl} if ttl else {})}
