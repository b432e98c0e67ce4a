"""``DjangoSaver``: LangGraph's checkpointer over pyhub_ai's models.

Use it like LangGraph's own savers::

    from pyhub_ai.checkpoint import DjangoSaver, conversation_thread_id

    agent = create_agent(model, tools, checkpointer=DjangoSaver())
    config = {"configurable": {"thread_id": conversation_thread_id(conversation, user)}}
    await agent.ainvoke({"messages": [("user", "Hi")]}, config)

A ``thread_id`` names a conversation thread (``pyhub_ai.models``): ``conversation_thread_id``
builds the one of a conversation (and user or visitor), any other string is the
``Conversation.session_id`` of a conversation created on the first write, as with
``DjangoChatMessageHistory(session_id=...)``. A list of LangChain messages in a channel
(``messages``) is stored as that thread's ``ConversationMessage`` rows, each message once; the
checkpoint refers to them (``pyhub_ai.checkpoint_messages``), so the chat page, the admin,
export and prune show a LangGraph thread like any other conversation. Other channel values are
serialized with the saver's ``serde``, as LangGraph's savers do.

Every method has its async twin (``aget_tuple``, ``alist``, ``aput``...), which runs the same
database work in one call of Django's async bridge (``sync_to_async``), as Django's own async
ORM methods do; a sync method called from a short-lived thread (LangGraph saves a sync run's
checkpoints from such threads) runs it there on ``pyhub_ai.dbthread``'s long-lived connections. A
turn's few statements are plain SQL (``pyhub_ai.statements``). The tables are read and written
on the router's ``db_for_read`` / ``db_for_write`` database for ``Checkpoint``; the conversation
tables must be on that database.
"""
from __future__ import annotations

import math
import random
import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, router, transaction
from django.db.models import Q
from django.db.models.fields.json import KeyTransform
from django.utils import timezone
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint as CheckpointDict,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from . import checkpoint_messages as stored_messages
from . import dbthread, statements
from .checkpoint_messages import MESSAGES_TYPE, MessageList, MessageListCache, ThreadRows
from .models import Checkpoint, CheckpointBlob, CheckpointWrite, Conversation, GraphThread

__all__ = ["DjangoSaver", "conversation_thread_id"]

#: Strings longer than this go to a blob row instead of staying inline in the checkpoint.
_MAX_INLINE_STRING = 512
#: The key of a stored checkpoint listing the channels whose values are blobs (so reading it
#: looks up only those; checkpoints stored without it look up every channel version).
_BLOB_CHANNELS = "pyhub_ai_blob_channels"
#: Checkpoints read per query by ``list``.
_LIST_PAGE = 100
_PRUNE_STRATEGIES = ("keep_latest", "delete")
_CANONICAL = re.compile(r"pyhub_ai\.conversation\.(?P<pk>\d+)(?:\.user\.(?P<user>\d+)|\.visitor\.(?P<visitor>[^.]+))?")


def conversation_thread_id(conversation: Conversation | int, user: Any = None, visitor_key: str = "") -> str:
    """The ``thread_id`` of a conversation thread: the conversation's own thread, or the thread
    of ``user`` (a signed-in user) or of ``visitor_key`` (an anonymous visitor) in a room where
    every user has a private thread (see ``pyhub_ai.models``)."""
    pk = getattr(conversation, "pk", conversation)
    user_pk = getattr(user, "pk", None) if user is not None and getattr(user, "is_authenticated", True) else None
    if user_pk is not None:
        return f"pyhub_ai.conversation.{pk}.user.{user_pk}"
    if visitor_key:
        return f"pyhub_ai.conversation.{pk}.visitor.{visitor_key}"
    return f"pyhub_ai.conversation.{pk}"


@dataclass(frozen=True)
class _Thread:
    """A resolved ``GraphThread``: its pk, the rows its messages are, and whether it came from
    the saver's memory (and may be stale)."""

    pk: int
    rows: ThreadRows
    remembered: bool = False


class DjangoSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer storing checkpoints in pyhub_ai's tables and messages as
    ``ConversationMessage`` rows.

    ``cache_threads``: how many threads' recent message lists the saver keeps decoded in memory
    (0: none), so a turn reads and writes only the messages it adds.
    """

    def __init__(self, *, serde: SerializerProtocol | None = None, cache_threads: int = 256) -> None:
        super().__init__(serde=serde)
        self.message_lists = MessageListCache(max_threads=cache_threads)
        self._threads: dict[str, _Thread] = {}
        self._threads_lock = threading.Lock()

    # -- Versions ------------------------------------------------------------------------------

    def get_next_version(self, current: str | int | None, channel: None = None) -> str:
        """``"<32-digit counter>.<random>"``, as LangGraph's PostgreSQL saver: increasing, and
        unique across forks of a thread."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # -- Reading -------------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names (``checkpoint_id``), or the thread's latest one."""
        return dbthread.run(router.db_for_read(Checkpoint), self._get_tuple, config)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await sync_to_async(self._get_tuple)(config)

    def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, ns = _thread_and_ns(config)
        checkpoint_id = get_checkpoint_id(config)

        def read(thread: _Thread) -> CheckpointTuple | None:
            found = statements.checkpoint_with_writes(thread.pk, ns, checkpoint_id)
            if found is None:
                return None
            row, pending = found
            return self._tuple(thread_id, thread, ns, *row, pending=pending)

        return self._with_thread(thread_id, read, create=False, again_if_none=True)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints, newest first: of ``config``'s thread (and namespace, and checkpoint id
        when given), whose metadata has every key/value of ``filter``, older than ``before``."""
        cursor, using = None, router.db_for_read(Checkpoint)
        while True:
            page = dbthread.run(using, self._list_page, config, filter, before, limit, cursor)
            yield from page.tuples
            if page.done:
                return
            cursor, limit = page.cursor, None if limit is None else limit - len(page.tuples)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        cursor = None
        while True:
            page = await sync_to_async(self._list_page)(config, filter, before, limit, cursor)
            for item in page.tuples:
                yield item
            if page.done:
                return
            cursor, limit = page.cursor, None if limit is None else limit - len(page.tuples)

    def _list_page(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
        cursor: tuple[Any, ...] | None,
    ) -> _Page:
        using = router.db_for_read(Checkpoint)
        rows = Checkpoint.objects.using(using).select_related("thread")
        if config is not None:
            configurable = config["configurable"]
            rows = rows.filter(thread__thread_id=configurable["thread_id"])
            if configurable.get("checkpoint_ns") is not None:
                rows = rows.filter(checkpoint_ns=configurable["checkpoint_ns"])
            if checkpoint_id := get_checkpoint_id(config):
                rows = rows.filter(checkpoint_id=checkpoint_id)
        if before is not None and (before_id := get_checkpoint_id(before)):
            rows = rows.filter(checkpoint_id__lt=before_id)
        rows, post_filter = _filter_metadata(rows, filter or {})
        rows = rows.order_by("-checkpoint_id", "-pk")
        if cursor is not None:
            rows = rows.filter(Q(checkpoint_id__lt=cursor[0]) | Q(checkpoint_id=cursor[0], pk__lt=cursor[1]))
        size = _LIST_PAGE if limit is None else min(limit, _LIST_PAGE)
        if size <= 0:
            return _Page([], None, True)
        page = list(rows[:size])
        tuples = []
        for row in page:
            if post_filter and not all(row.metadata.get(key) == value for key, value in post_filter.items()):
                continue
            thread = _Thread(row.thread.pk, _rows_of(row.thread))
            tuples.append(
                self._tuple(
                    row.thread.thread_id, thread, row.checkpoint_ns, row.checkpoint_id, row.parent_checkpoint_id,
                    row.checkpoint, row.metadata, row.message_runs,
                )  # fmt: skip
            )
        done = len(page) < size or (limit is not None and len(tuples) >= limit)
        cursor = (page[-1].checkpoint_id, page[-1].pk) if page else None
        return _Page(tuples, cursor, done)

    def _tuple(
        self,
        thread_id: str,
        thread: _Thread,
        ns: str,
        checkpoint_id: str,
        parent_id: str,
        body: dict[str, Any],
        metadata: Any,
        message_runs: dict[str, Any] | None,
        pending: list[tuple] | None = None,
    ) -> CheckpointTuple:
        """The ``CheckpointTuple`` of a stored checkpoint: its channel values (inline, message
        lists from ``message_runs``, the others from blobs) and pending writes (read here
        unless given)."""
        checkpoint: dict[str, Any] = dict(body)
        blob_channels = checkpoint.pop(_BLOB_CHANNELS, None)
        values = dict(checkpoint.get("channel_values") or {})
        using = router.db_for_read(Checkpoint)
        for channel, runs in (message_runs or {}).items():
            values[channel] = self._load_messages(thread, tuple(map(tuple, runs)), using)
        versions = {
            channel: str(version)
            for channel, version in checkpoint["channel_versions"].items()
            if channel not in values and (blob_channels is None or channel in blob_channels)
        }
        if pending is None:
            blobs, writes = statements.checkpoint_values(thread.pk, ns, checkpoint_id, versions)
        else:
            blobs, writes = statements.checkpoint_blobs(thread.pk, ns, versions), pending
        for channel, _, kind, blob in blobs:
            values[channel] = self._load_value(thread, kind, blob, using)
        checkpoint["channel_values"] = values
        pending_writes = [(task_id, channel, self.serde.loads_typed((kind, bytes(blob)))) for task_id, channel, kind, blob in writes]
        config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}
        parent_config = None
        if parent_id:
            parent_config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": parent_id}}
        return CheckpointTuple(config, checkpoint, metadata, parent_config, pending_writes)  # type: ignore[arg-type]

    def _load_value(self, thread: _Thread, kind: str, blob: Any, using: str) -> Any:
        """A value stored in a blob (message lists too, in checkpoints stored before
        ``Checkpoint.message_runs``)."""
        if kind == MESSAGES_TYPE:
            return self._load_messages(thread, stored_messages.decode_runs(blob), using)
        return self.serde.loads_typed((kind, bytes(blob)))

    def _load_messages(self, thread: _Thread, runs: tuple[stored_messages.Run, ...], using: str) -> list[BaseMessage]:
        """The message list ``runs`` (a copy: LangGraph and its callers may change it), read
        from the saver's memory where it can."""
        loaded = stored_messages.load(thread.rows, runs, self.message_lists.recent(thread.pk), using)
        self.message_lists.add(thread.pk, loaded)
        return list(loaded.messages)

    # -- Writing -------------------------------------------------------------------------------

    def put(
        self, config: RunnableConfig, checkpoint: CheckpointDict, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        """Store a checkpoint: the values of the channels in ``new_versions`` (messages as rows,
        the rest serialized), then the checkpoint itself, in one transaction."""
        return dbthread.run(router.db_for_write(Checkpoint), self._put, config, checkpoint, metadata, new_versions)

    def _put(
        self, config: RunnableConfig, checkpoint: CheckpointDict, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        thread_id, ns = _thread_and_ns(config)
        parent_id = get_checkpoint_id(config) or ""
        body: dict[str, Any] = {key: value for key, value in checkpoint.items() if key != "channel_values"}
        values = checkpoint["channel_values"]
        inline = body["channel_values"] = {channel: value for channel, value in values.items() if _inline(value)}
        others = {channel: value for channel, value in values.items() if channel not in inline}
        stored_metadata = get_serializable_checkpoint_metadata(config, metadata)
        using = router.db_for_write(Checkpoint)

        def write(thread: _Thread) -> None:
            runs: dict[str, list[list[int]]] = {}
            plans: dict[str, stored_messages.Plan] = {}
            blobs = []
            for channel, value in others.items():
                if stored_messages.looks_like_message_list(value):
                    if channel not in new_versions:
                        found = self._unchanged_runs(thread, ns, channel, value, checkpoint["channel_versions"].get(channel), parent_id, using)
                        if found is not None:
                            runs[channel] = [list(run) for run in found]
                            continue
                    planned = self._plan_messages(thread, ns, channel, value, parent_id, using)
                    if planned is not None:
                        plans[channel] = planned
                        continue
                if channel in new_versions:
                    kind, blob = self.serde.dumps_typed(value)
                    blobs.append((channel, str(new_versions[channel]), kind, blob))
            body[_BLOB_CHANNELS] = sorted(channel for channel in others if channel not in runs and channel not in plans)
            row = (thread.pk, ns, checkpoint["id"], parent_id, body, stored_metadata)
            inserting = [channel for channel, planned in plans.items() if planned.new_rows]
            for channel, planned in plans.items():
                if not planned.new_rows:
                    runs[channel] = [list(run) for run in self._finish_messages(thread, planned, using).runs]
            if not inserting and not blobs:
                statements.insert_checkpoint(*row, runs, timezone.now())
            elif statements.can_insert_checkpoint_at_once() and len(inserting) <= 1 and all(plans[c].appends_only() for c in inserting):
                self._put_at_once(thread, row, runs, blobs, {channel: plans[channel] for channel in inserting})
            else:
                with transaction.atomic(using=using):
                    for channel in inserting:
                        statements.insert_messages(plans[channel].new_rows, using=using)
                        runs[channel] = [list(run) for run in self._finish_messages(thread, plans[channel], using).runs]
                    statements.insert_blobs(thread.pk, ns, blobs)
                    statements.insert_checkpoint(*row, runs, timezone.now())

        self._with_thread(thread_id, write, create=True)
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    async def aput(
        self, config: RunnableConfig, checkpoint: CheckpointDict, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        return await sync_to_async(self._put)(config, checkpoint, metadata, new_versions)

    def _plan_messages(self, thread: _Thread, ns: str, channel: str, value: list[Any], parent_id: str, using: str) -> stored_messages.Plan | None:
        """How a changed message list is stored (called by ``_put``): which rows it reuses (from
        the saver's memory, else the parent checkpoint's list) and which it adds; ``None`` when
        it cannot be stored as rows."""
        bases = self.message_lists.recent(thread.pk) or self._parent_lists(thread, ns, channel, parent_id, using)
        return stored_messages.plan(thread.rows, value, bases, self.message_lists.known(thread.pk))

    def _finish_messages(self, thread: _Thread, planned: stored_messages.Plan, using: str) -> MessageList:
        """The stored list of ``planned`` once its rows are inserted, remembered (called by ``_put``)."""
        stored = stored_messages.finish(thread.rows, planned, using)
        self.message_lists.add(thread.pk, stored)
        return stored

    def _put_at_once(
        self, thread: _Thread, row: tuple[Any, ...], runs: dict[str, Any], blobs: list[tuple[str, str, str, bytes]], plans: dict[str, stored_messages.Plan]
    ) -> None:
        """Store the checkpoint ``row`` with its blobs and the new rows of (at most) one list
        appended to, at once: one statement on PostgreSQL, one transaction on SQLite (called by
        ``_put`` where the database can)."""
        channel, planned = next(iter(plans.items()), (None, None))
        if planned is None:
            statements.insert_checkpoint_at_once(*row, runs, timezone.now(), blobs=blobs)
            return
        base_runs = stored_messages.merged_runs(planned.base.runs if planned.base is not None else ())
        runs = {**runs, channel: [*map(list, base_runs), statements.NEW_ROWS]}
        ids = statements.insert_checkpoint_at_once(*row, runs, timezone.now(), blobs=blobs, rows=planned.new_rows)
        self.message_lists.add(thread.pk, stored_messages.with_new_rows(planned, base_runs, ids))

    def _unchanged_runs(
        self, thread: _Thread, ns: str, channel: str, value: list[Any], version: Any, parent_id: str, using: str
    ) -> tuple[stored_messages.Run, ...] | None:
        """The runs of a message list that did not change since the parent checkpoint (called by
        ``_put``): the saver's memory has it, or the parent checkpoint stored it at the same
        version; ``None`` if neither (``_put`` stores it as a changed list)."""
        stored = stored_messages.find(value, self.message_lists.recent(thread.pk))
        if stored is not None:
            return stored.runs
        if parent_id and version is not None:
            return self._parent_runs(thread, ns, channel, parent_id, str(version), using)
        return None

    def _parent_runs(
        self, thread: _Thread, ns: str, channel: str, parent_id: str, version: str | None, using: str
    ) -> tuple[stored_messages.Run, ...] | None:
        """The runs of the parent checkpoint's message list of ``channel`` (at ``version``, when
        given), from its row or, for a checkpoint stored before ``Checkpoint.message_runs``,
        its blob."""
        parent = Checkpoint.objects.using(using).filter(thread_id=thread.pk, checkpoint_ns=ns, checkpoint_id=parent_id)
        row = parent.values_list("checkpoint", "message_runs").first()
        if row is None:
            return None
        body, message_runs = row
        parent_version = (body or {}).get("channel_versions", {}).get(channel)
        if parent_version is None or (version is not None and str(parent_version) != version):
            return None
        if channel in (message_runs or {}):
            return tuple(map(tuple, message_runs[channel]))
        blob = CheckpointBlob.objects.using(using).filter(
            thread_id=thread.pk, checkpoint_ns=ns, channel=channel, version=str(parent_version), type=MESSAGES_TYPE
        )
        runs = blob.values_list("blob", flat=True).first()
        return None if runs is None else stored_messages.decode_runs(runs)

    def _parent_lists(self, thread: _Thread, ns: str, channel: str, parent_id: str, using: str) -> list[MessageList]:
        """The parent checkpoint's message list of ``channel`` (read when the saver has no list
        of this thread in memory, e.g. in a new process), so its messages are not stored again."""
        runs = self._parent_runs(thread, ns, channel, parent_id, None, using) if parent_id else None
        if runs is None:
            return []
        return [stored_messages.load(thread.rows, runs, [], using)]

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        """Store a task's writes, pending for the checkpoint ``config`` names. Writing the same
        task's writes again changes nothing, except for the special channels (errors,
        interrupts...), which are replaced."""
        return dbthread.run(router.db_for_write(Checkpoint), self._put_writes, config, writes, task_id, task_path)

    def _put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        thread_id, ns = _thread_and_ns(config)
        checkpoint_id = config["configurable"]["checkpoint_id"]

        def write(thread: _Thread) -> None:
            rows = []
            for index, (channel, value) in enumerate(writes):
                kind, blob = self.serde.dumps_typed(value)
                rows.append((WRITES_IDX_MAP.get(channel, index), channel, kind, blob))
            replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
            statements.insert_writes(thread.pk, ns, checkpoint_id, task_id, task_path, rows, replace=replace)

        if writes:
            self._with_thread(thread_id, write, create=True)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await sync_to_async(self._put_writes)(config, writes, task_id, task_path)

    # -- Deleting and copying ------------------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        """Delete the thread: its checkpoints and writes, and its messages. A conversation that
        was created for the thread (its ``session_id`` is the ``thread_id``) is deleted with it."""
        return dbthread.run(router.db_for_write(Checkpoint), self._delete_thread, thread_id)

    def _delete_thread(self, thread_id: str) -> None:
        using = router.db_for_write(Checkpoint)
        thread = GraphThread.objects.using(using).filter(thread_id=thread_id).select_related("conversation").first()
        self._forget(thread_id, thread)
        if thread is None:
            return
        with transaction.atomic(using=using):
            if thread.conversation.session_id == thread_id:
                thread.conversation.delete(using=using)
            else:
                _rows_of(thread).queryset(using).delete()
                thread.delete(using=using)

    async def adelete_thread(self, thread_id: str) -> None:
        await sync_to_async(self._delete_thread)(thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) made by the runs ``run_ids``; the messages
        stay, as part of their conversation."""
        return dbthread.run(router.db_for_write(Checkpoint), self._delete_for_runs, run_ids)

    def _delete_for_runs(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        using = router.db_for_write(Checkpoint)
        with transaction.atomic(using=using):
            doomed = Checkpoint.objects.using(using).alias(run_id=KeyTransform("run_id", "metadata")).filter(run_id__in=list(run_ids))
            keys = list(doomed.values_list("thread_id", "checkpoint_ns", "checkpoint_id"))
            _delete_writes(keys, using)
            doomed.delete()

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await sync_to_async(self._delete_for_runs)(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of one thread to another, with its messages: the
        target's conversation thread gets copies of the source's rows."""
        return dbthread.run(router.db_for_write(Checkpoint), self._copy_thread, source_thread_id, target_thread_id)

    def _copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        using = router.db_for_write(Checkpoint)
        source = GraphThread.objects.using(using).filter(thread_id=source_thread_id).first()
        if source is None:
            return

        def copy(target: _Thread) -> None:
            with transaction.atomic(using=using):
                pk_map = _copy_rows(_rows_of(source), target.rows, using)
                blobs = []
                for blob in CheckpointBlob.objects.using(using).filter(thread=source).iterator():
                    if blob.type == MESSAGES_TYPE:
                        blob.blob = stored_messages.encode_runs(_map_runs(stored_messages.decode_runs(blob.blob), pk_map))
                    blob.pk, blob.thread_id = None, target.pk
                    blobs.append(blob)
                CheckpointBlob.objects.using(using).bulk_create(blobs, ignore_conflicts=True)
                for model in (Checkpoint, CheckpointWrite):
                    copies = []
                    for row in model.objects.using(using).filter(thread=source).iterator():
                        row.pk, row.thread_id = None, target.pk
                        if model is Checkpoint:
                            row.message_runs = {
                                channel: [list(run) for run in _map_runs([tuple(run) for run in runs], pk_map)]
                                for channel, runs in (row.message_runs or {}).items()
                            }
                        copies.append(row)
                    model.objects.using(using).bulk_create(copies, ignore_conflicts=True)

        self._with_thread(target_thread_id, copy, create=True)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await sync_to_async(self._copy_thread)(source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest``: keep each namespace's latest checkpoint (and its writes) only;
        ``delete``: delete every checkpoint. Messages stay, as part of their conversation."""
        return dbthread.run(router.db_for_write(Checkpoint), self._prune, thread_ids, strategy)

    def _prune(self, thread_ids: Sequence[str], strategy: str = "keep_latest") -> None:
        if strategy not in _PRUNE_STRATEGIES:
            raise ValueError(f"Unknown prune strategy {strategy!r}: use one of {', '.join(_PRUNE_STRATEGIES)}.")
        using = router.db_for_write(Checkpoint)
        for thread in GraphThread.objects.using(using).filter(thread_id__in=list(thread_ids)):
            with transaction.atomic(using=using):
                if strategy == "delete":
                    for model in (Checkpoint, CheckpointBlob, CheckpointWrite):
                        model.objects.using(using).filter(thread=thread).delete()
                else:
                    _keep_latest(thread, using)
            self.message_lists.forget(thread.pk)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await sync_to_async(self._prune)(thread_ids, strategy)

    # -- Conversations stored before ----------------------------------------------------------

    def thread_messages(self, thread_id: str, before: int | None = None) -> list[BaseMessage]:
        """The complete messages already stored in the conversation thread ``thread_id`` names
        (by a chat consumer or ``DjangoChatMessageHistory``, say), oldest first. The saver
        remembers them, so a checkpoint that lists them refers to their rows: give them to a
        thread that has no checkpoint yet, and it continues the conversation without copying it::

            if not graph.get_state(config).values.get("messages"):
                graph.update_state(config, {"messages": saver.thread_messages(thread_id)})

        ``before``: only the rows with a smaller id.
        """
        return dbthread.run(router.db_for_write(Checkpoint), self._thread_messages, thread_id, before)

    async def athread_messages(self, thread_id: str, before: int | None = None) -> list[BaseMessage]:
        return await sync_to_async(self._thread_messages)(thread_id, before)

    def _thread_messages(self, thread_id: str, before: int | None = None) -> list[BaseMessage]:
        def read(thread: _Thread) -> list[BaseMessage]:
            stored = stored_messages.stored_thread(thread.rows, router.db_for_write(Checkpoint), before)
            self.message_lists.add(thread.pk, stored)
            return list(stored.messages)

        return self._with_thread(thread_id, read, create=True)

    def remember_rows(self, thread_id: str, pairs: Sequence[tuple[BaseMessage, int]]) -> None:
        """Tell the saver that these message objects are already stored, as these rows of the
        thread's conversation (a chat consumer stores a turn's messages itself): a checkpoint
        that lists them refers to the rows instead of storing them again."""
        thread = dbthread.run(router.db_for_write(Checkpoint), self._thread, thread_id, True)
        self.message_lists.add(thread.pk, stored_messages.known_rows(pairs), key=stored_messages.KNOWN_ROWS)

    async def aremember_rows(self, thread_id: str, pairs: Sequence[tuple[BaseMessage, int]]) -> None:
        thread = await sync_to_async(self._thread)(thread_id, True)
        self.message_lists.add(thread.pk, stored_messages.known_rows(pairs), key=stored_messages.KNOWN_ROWS)

    # -- Threads -------------------------------------------------------------------------------

    def _with_thread(self, thread_id: str, work: Any, *, create: bool, again_if_none: bool = False) -> Any:
        """Run ``work(thread)`` for the thread ``thread_id`` (``None`` when it does not exist and
        ``create`` is false). A thread the saver remembered may have been deleted meanwhile (by
        another process): on an integrity error, or when ``work`` finds nothing and
        ``again_if_none``, it is looked up again."""
        thread = self._thread(thread_id, create=create)
        if thread is None:
            return None
        try:
            result = work(thread)
        except IntegrityError:
            if not thread.remembered:
                raise
            self._forget(thread_id)
            return self._with_thread(thread_id, work, create=create, again_if_none=again_if_none)
        if result is None and again_if_none and thread.remembered:
            self._forget(thread_id)
            fresh = self._thread(thread_id, create=create)
            if fresh is not None and fresh.pk != thread.pk:
                return work(fresh)
        return result

    def _thread(self, thread_id: str, create: bool) -> _Thread | None:
        with self._threads_lock:
            remembered = self._threads.get(thread_id)
        if remembered is not None:
            return remembered
        using = router.db_for_write(Checkpoint) if create else router.db_for_read(Checkpoint)
        row = GraphThread.objects.using(using).filter(thread_id=thread_id).first()
        if row is None:
            if not create:
                return None
            row = _create_thread(thread_id, using)
        with self._threads_lock:
            self._threads[thread_id] = _Thread(row.pk, _rows_of(row), remembered=True)
        return _Thread(row.pk, _rows_of(row))

    def _forget(self, thread_id: str, deleted: GraphThread | None = None) -> None:
        """Look ``thread_id`` up again next time; a thread that was ``deleted`` also loses the
        message lists remembered for it."""
        with self._threads_lock:
            remembered = self._threads.pop(thread_id, None)
        if deleted is not None:
            for pk in {getattr(remembered, "pk", None), deleted.pk} - {None}:
                self.message_lists.forget(pk)


@dataclass
class _Page:
    tuples: list[CheckpointTuple]
    cursor: tuple[Any, ...] | None
    done: bool


def _thread_and_ns(config: RunnableConfig) -> tuple[str, str]:
    configurable = config["configurable"]
    return str(configurable["thread_id"]), configurable.get("checkpoint_ns") or ""


def _rows_of(thread: GraphThread) -> ThreadRows:
    return ThreadRows(thread.conversation_id, thread.user_id, thread.visitor_key)


def _create_thread(thread_id: str, using: str) -> GraphThread:
    """A new ``GraphThread``: the conversation thread ``conversation_thread_id`` names, or the
    conversation whose ``session_id`` is ``thread_id`` (created if needed)."""
    fields: dict[str, Any]
    if match := _CANONICAL.fullmatch(thread_id):
        conversation_pk = int(match["pk"])
        if not Conversation.objects.using(using).filter(pk=conversation_pk).exists():
            raise ValueError(f"thread_id {thread_id!r} names conversation #{conversation_pk}, which does not exist.")
        fields = {"conversation_id": conversation_pk, "user_id": match["user"] and int(match["user"]), "visitor_key": match["visitor"] or ""}
    else:
        conversation, _ = Conversation.objects.using(using).get_or_create(session_id=thread_id)
        fields = {"conversation_id": conversation.pk, "user_id": None, "visitor_key": ""}
    thread, _ = GraphThread.objects.using(using).get_or_create(thread_id=thread_id, defaults=fields)
    return thread


def _inline(value: Any) -> bool:
    """Whether a channel value stays in the checkpoint's JSON (small plain values)."""
    if value is None or isinstance(value, (bool, int)):
        return not isinstance(value, int) or abs(value) < 2**53
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= _MAX_INLINE_STRING and "\x00" not in value
    return False


def _filter_metadata(rows: Any, filter: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``rows`` narrowed to the plain values of ``filter`` in SQL; the rest of ``filter`` (lists,
    objects), which the caller checks on the rows read."""
    rest = {}
    for index, (key, value) in enumerate(filter.items()):
        if value is None or isinstance(value, (str, bool, int, float)):
            alias = f"_metadata_{index}"
            rows = rows.alias(**{alias: KeyTransform(key, "metadata")}).filter(**{alias: value})
        else:
            rest[key] = value
    return rows, rest


def _delete_writes(keys: Sequence[tuple[int, str, str]], using: str) -> None:
    """Delete the writes of the checkpoints ``(thread pk, namespace, checkpoint id)``."""
    condition = Q()
    for thread_pk, ns, checkpoint_id in keys:
        condition |= Q(thread_id=thread_pk, checkpoint_ns=ns, checkpoint_id=checkpoint_id)
    if keys:
        CheckpointWrite.objects.using(using).filter(condition).delete()


def _keep_latest(thread: GraphThread, using: str) -> None:
    """Delete all but each namespace's latest checkpoint of ``thread``, their writes, and the
    values no kept checkpoint uses."""
    checkpoints = Checkpoint.objects.using(using).filter(thread=thread)
    if checkpoints.alias(counters=KeyTransform("counters_since_delta_snapshot", "metadata")).filter(counters__isnull=False).exists():
        raise NotImplementedError(f"keep_latest cannot prune thread {thread.thread_id!r}: it uses a DeltaChannel.")
    latest: dict[str, Checkpoint] = {}
    for row in checkpoints.order_by("checkpoint_ns", "-checkpoint_id"):
        latest.setdefault(row.checkpoint_ns, row)
    for ns, kept in latest.items():
        doomed = checkpoints.filter(checkpoint_ns=ns).exclude(pk=kept.pk)
        _delete_writes([(thread.pk, ns, checkpoint_id) for checkpoint_id in doomed.values_list("checkpoint_id", flat=True)], using)
        doomed.delete()
        if kept.parent_checkpoint_id:
            checkpoints.filter(pk=kept.pk).update(parent_checkpoint_id="")
        used = {(channel, str(version)) for channel, version in kept.checkpoint["channel_versions"].items()}
        blobs = CheckpointBlob.objects.using(using).filter(thread=thread, checkpoint_ns=ns)
        unused = [pk for pk, channel, version in blobs.values_list("pk", "channel", "version") if (channel, version) not in used]
        blobs.filter(pk__in=unused).delete()


def _copy_rows(source: ThreadRows, target: ThreadRows, using: str) -> dict[int, int]:
    """Copy the messages of one conversation thread to another; old row id -> new row id, in order."""
    if source == target:
        return {}
    rows = list(source.queryset(using).order_by("pk"))
    old_pks = [row.pk for row in rows]
    for row in rows:
        row.pk = None
        row.conversation_id, row.user_id, row.visitor_key = target.conversation_id, target.user_id, target.visitor_key
        row.idempotency_key = ""
    source.queryset(using).model.objects.using(using).bulk_create(rows)
    return dict(zip(old_pks, (row.pk for row in rows)))


def _map_runs(runs: Sequence[stored_messages.Run], pk_map: dict[int, int]) -> list[stored_messages.Run]:
    """The runs of copied rows (``pk_map``: old id -> new id, both increasing); an empty map
    means the rows were not copied (same conversation thread)."""
    if not pk_map:
        return list(runs)
    old = sorted(pk_map)
    mapped = []
    for first, last, count in runs:
        start, stop = bisect_left(old, first), bisect_right(old, last)
        if start < stop:
            mapped.append((pk_map[old[start]], pk_map[old[stop - 1]], count))
    return mapped
