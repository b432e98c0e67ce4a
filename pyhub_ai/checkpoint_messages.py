"""How a checkpoint refers to its messages instead of copying them.

A LangGraph ``messages`` channel (``MessagesState``, ``create_agent``) holds the whole
conversation; LangGraph's own savers write it again every time it changes. ``DjangoSaver``
stores each message once, as a ``ConversationMessage`` row of the LangGraph thread's
conversation thread, and stores the list as *runs*: ``(first id, last id, count)`` triples, each
meaning "this thread's rows with ids from first to last", in list order. A turn that appends
two messages to a 10,000-message list inserts two rows and writes one run, as it would at 10.

Which rows a new list reuses is decided by object identity: the saver remembers, per thread,
the last lists it stored or read (``MessageListCache``) with their row ids, and LangGraph's
``add_messages`` keeps the message objects it did not change. A list the cache does not know
is compared against the parent checkpoint's list, read from the database once.

Reading a list fetches only the rows the cache does not have: a list that extends a cached one
costs the rows of its new messages. All functions are synchronous and run inside the saver's
database calls (on the ``using`` database).
"""
from __future__ import annotations

import gc
import json
import logging
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

from . import codec, statements
from .models import ConversationMessage

logger = logging.getLogger(__name__)

#: The ``CheckpointBlob.type`` of a message list stored as runs of rows.
MESSAGES_TYPE = "pyhub_ai.messages"

Run = tuple[int, int, int]
"""``(first row id, last row id, number of rows)``: a thread's rows with ids in that range."""

#: The cache key of the rows a thread was told of (``DjangoSaver.remember_rows``); the latest
#: call replaces the one before.
KNOWN_ROWS = "known rows"

#: More runs than this are read with one range query over the thread instead of one range each.
_MAX_RANGES_PER_QUERY = 50

#: Reading at least this many rows pauses the garbage collector (``_collection_paused``).
_PAUSE_COLLECTION_ROWS = 1000

#: A list with more runs than this past its settled ones is compacted (one query) when stored.
_UNSETTLED_RUNS = 8


@dataclass(frozen=True)
class ThreadRows:
    """The conversation thread a LangGraph thread's messages are stored in."""

    conversation_id: int
    user_id: int | None
    visitor_key: str

    def key(self) -> tuple[int, int | None, str]:
        return self.conversation_id, self.user_id, self.visitor_key

    def fields(self) -> dict[str, Any]:
        return {"conversation_id": self.conversation_id, "user_id": self.user_id, "visitor_key": self.visitor_key}

    def queryset(self, using: str):
        return ConversationMessage.objects.using(using).filter(**self.fields())


@dataclass(frozen=True)
class MessageList:
    """A stored message list: its runs, and per message its row id (``pks``: an ``array``, so
    copying it touches no int objects). Never modified once made (lists, not tuples: comparing
    lists of the same objects is a C loop)."""

    runs: tuple[Run, ...]
    pks: array[int]
    messages: list[BaseMessage]
    #: How many of the first runs cannot be merged with the next one (another row of the thread
    #: lies between them): ``_RunBuilder.compact`` does not check them again.
    settled: int = 0


def encode_runs(runs: Sequence[Run]) -> bytes:
    """The blob of a message list (JSON, so the admin shows it)."""
    return json.dumps({"runs": [list(run) for run in runs]}, separators=(",", ":")).encode()


def decode_runs(blob: bytes) -> tuple[Run, ...]:
    return tuple(tuple(run) for run in json.loads(bytes(blob))["runs"])  # type: ignore[misc]


def looks_like_message_list(value: Any) -> bool:
    """Whether ``value`` is a list that starts with a LangChain message: a candidate for rows
    (``store`` checks the rest of it, and turns down a list that mixes in other values)."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], BaseMessage)


class MessageListCache:
    """The last few message lists stored or read, per LangGraph thread (``GraphThread`` pk),
    most recent last; least recently used threads are forgotten first. Thread-safe."""

    def __init__(self, max_threads: int = 256, lists_per_thread: int = 6) -> None:
        self.max_threads = max_threads
        self.lists_per_thread = lists_per_thread
        self._threads: OrderedDict[int, OrderedDict[Any, MessageList]] = OrderedDict()
        self._lock = threading.Lock()

    def recent(self, thread_pk: int) -> list[MessageList]:
        """This thread's cached lists, most recent first (not its ``KNOWN_ROWS``)."""
        with self._lock:
            lists = self._threads.get(thread_pk)
            if lists is None:
                return []
            self._threads.move_to_end(thread_pk)
            return [stored for key, stored in reversed(lists.items()) if key != KNOWN_ROWS]

    def known(self, thread_pk: int) -> MessageList | None:
        """The rows this thread was last told of (``DjangoSaver.remember_rows``)."""
        with self._lock:
            return self._threads.get(thread_pk, {}).get(KNOWN_ROWS)

    def add(self, thread_pk: int, stored: MessageList, key: Any = None) -> None:
        """Remember ``stored`` (under ``key``, which replaces what it named; default: its runs)."""
        if self.max_threads <= 0:
            return
        key = stored.runs if key is None else key
        with self._lock:
            lists = self._threads.setdefault(thread_pk, OrderedDict())
            self._threads.move_to_end(thread_pk)
            lists[key] = stored
            lists.move_to_end(key)
            while len(lists) > self.lists_per_thread:
                lists.popitem(last=False)
            while len(self._threads) > self.max_threads:
                self._threads.popitem(last=False)

    def forget(self, thread_pk: int) -> None:
        with self._lock:
            self._threads.pop(thread_pk, None)


# -- Writing ---------------------------------------------------------------------------------


@dataclass
class Plan:
    """How a list is stored (made by ``plan``): the stored list it starts with (``base``), per
    further message ``(row id, run key, position)`` of its stored row or the message itself, and
    the rows to insert (their ids are set once inserted; ``finish`` builds the stored list)."""

    messages: list[BaseMessage]
    base: MessageList | None
    items: list[Any]
    new_rows: list[ConversationMessage]

    def appends_only(self) -> bool:
        """Whether the list is a stored one (or nothing) plus new messages, which can be stored
        in one statement with the checkpoint (``statements.insert_checkpoint_at_once``)."""
        return len(self.new_rows) == len(self.items) > 0 and (self.base is None or len(self.base.runs) - self.base.settled <= _UNSETTLED_RUNS)


def plan(thread: ThreadRows, messages: list[BaseMessage], bases: Sequence[MessageList], known: MessageList | None = None) -> Plan | None:
    """Which rows ``messages`` reuses (found in ``bases`` or ``known``: rows stored by someone
    else) and which it needs (complete rows of ``thread``); ``None`` when an item is not a
    message or cannot be stored as a row (the caller serializes the list instead).

    The usual list is a stored one plus new messages: its head is found with one list
    comparison, and only its tail is looked up (in ``known``)."""
    messages = list(messages)  # the stored list's own copy: LangGraph's may change later
    base = _longest_prefix_base(messages, bases)
    if base is not None:
        items: list[Any] = _match_items(messages[len(base.messages) :], [known] if known else [])
    else:
        items = _match_items(messages, [*bases, known] if known else bases)
    fresh = [item for item in items if not isinstance(item, tuple)]
    if not all(isinstance(item, BaseMessage) for item in fresh):
        return None
    try:
        new_rows = [ConversationMessage.from_message(message, **thread.fields()) for message in fresh]
    except codec.CodecError:
        return None
    return Plan(messages, base, items, new_rows)


def finish(thread: ThreadRows, planned: Plan, using: str) -> MessageList:
    """The stored list of ``planned`` once its new rows are inserted: its runs (compacted with
    one query when it has many unsettled ones)."""
    builder = _RunBuilder(thread, using)
    if planned.base is not None:
        builder.runs, builder.pks, builder.settled = list(planned.base.runs), array("q", planned.base.pks), planned.base.settled
    new_pks = iter([row.pk for row in planned.new_rows])
    pending: list[int] = []
    for item in planned.items:
        if isinstance(item, tuple):
            builder.add_new(pending)
            pending = []
            builder.add_reused(*item)
        else:
            pending.append(next(new_pks))
    builder.add_new(pending)
    if len(builder.runs) - builder.settled > _UNSETTLED_RUNS:
        builder.compact()
    return MessageList(runs=tuple(builder.runs), pks=builder.pks, messages=planned.messages, settled=builder.settled)


def merged_runs(runs: Sequence[Run]) -> list[Run]:
    """``runs`` with neighbours of consecutive ids merged (no other row can lie between them):
    the runs a list that appends new rows starts with (``DjangoSaver._put_at_once``), and what
    the admin shows. The new rows' runs follow (``with_new_rows``), not merged with the last
    one, so the statement that inserts them need not know their ids before
    (``statements.insert_checkpoint_at_once``); the next list stored after this one merges
    them. Merging never reaches a settled run (``MessageList.settled``: those have another row
    of the thread after them)."""
    merged: list[Run] = []
    for first, last, count in runs:
        if merged and merged[-1][1] + 1 == first:
            merged[-1] = (merged[-1][0], last, merged[-1][2] + count)
        else:
            merged.append((first, last, count))
    return merged


def with_new_rows(planned: Plan, runs: Sequence[Run], ids: Sequence[int]) -> MessageList:
    """The stored list of ``planned`` (only new messages after its base), whose runs are
    ``runs`` (``merged_runs``) and those of its new rows ``ids`` (``statements.new_rows_runs``)."""
    pks = array("q", planned.base.pks) if planned.base is not None else array("q")
    pks.extend(ids)
    settled = planned.base.settled if planned.base is not None else 0
    stored_runs = (*runs, *statements.new_rows_runs(ids))
    return MessageList(runs=stored_runs, pks=pks, messages=planned.messages, settled=min(settled, max(len(stored_runs) - 1, 0)))


def store(
    thread: ThreadRows, messages: list[BaseMessage], bases: Sequence[MessageList], using: str, known: MessageList | None = None
) -> MessageList | None:
    """Store ``messages`` (``plan``, insert its new rows, ``finish``); ``None`` when it cannot
    be stored as rows."""
    planned = plan(thread, messages, bases, known)
    if planned is None:
        return None
    if planned.new_rows:
        statements.insert_messages(planned.new_rows, using=using)
    return finish(thread, planned, using)


def find(messages: list[Any], bases: Sequence[MessageList]) -> MessageList | None:
    """The base list that holds exactly ``messages`` (the same objects, or equal ones), if any:
    a list stored or read before, which needs no new row."""
    for base in bases:
        if len(base.messages) == len(messages) and base.messages == messages:
            return base
    return None


def _longest_prefix_base(messages: list[BaseMessage], bases: Sequence[MessageList]) -> MessageList | None:
    """The longest base list whose messages are the first messages of ``messages``: the same
    objects (the usual case: list equality checks identity first, in C), or equal ones (lists
    read again from the rows). ``messages`` is cut to each base's length and made whole again
    (a slice of the head would touch every message of a long list)."""
    for base in sorted(bases, key=lambda base: len(base.messages), reverse=True):
        size = len(base.messages)
        if size > len(messages):
            continue
        tail = messages[size:]
        del messages[size:]
        try:
            same = messages == base.messages
        finally:
            messages.extend(tail)
        if same:
            return base
    return None


def _match_items(messages: list[BaseMessage], bases: Sequence[MessageList]) -> list[Any]:
    """Per message, ``(row id, run key, position)`` of the row it is stored in, found in
    ``bases`` (the most recent base wins) as the same object or an equal message with the same
    ``id``, or the message itself when it needs a new row."""
    by_identity: dict[int, tuple[int, tuple[int, int], int]] = {}
    by_id: dict[str, tuple[BaseMessage, tuple[int, tuple[int, int], int]]] = {}
    for base_index, base in reversed(list(enumerate(bases))):
        position = 0
        for run_index, (_, _, count) in enumerate(base.runs):
            for offset in range(position, min(position + count, len(base.messages))):
                message, row = base.messages[offset], (base.pks[offset], (base_index, run_index), offset)
                by_identity[id(message)] = row
                if message.id:
                    by_id[message.id] = (message, row)
            position += count
    items: list[Any] = []
    for message in messages:
        row = by_identity.get(id(message))
        if row is None and isinstance(message, BaseMessage) and message.id in by_id:
            stored, candidate = by_id[message.id]
            row = candidate if stored == message else None
        items.append(message if row is None else row)
    return items


class _RunBuilder:
    """Builds the runs of a list row by row, in list order. Rows with consecutive ids (or next
    to each other in a stored run) share a run; other neighbours are merged by ``compact``, which
    checks with one query that no other row of the thread lies between them."""

    def __init__(self, thread: ThreadRows, using: str) -> None:
        self.thread, self.using = thread, using
        self.runs: list[Run] = []
        self.pks = array("q")
        self.settled = 0
        self._last: tuple[tuple[int, int], int] | None = None

    def add_reused(self, pk: int, run_key: tuple[int, int], position: int) -> None:
        """A stored row: it extends the last run when it is the next row of the same stored run
        or the thread's next id; else it starts a run of its own."""
        if self.runs and self.pks and self.pks[-1] < pk and (self._last == (run_key, position - 1) or self.runs[-1][1] + 1 == pk):
            first, _, count = self.runs[-1]
            self.runs[-1] = (first, pk, count + 1)
        else:
            self.runs.append((pk, pk, 1))
        self.pks.append(pk)
        self._last = (run_key, position)

    def add_new(self, new_pks: list[int]) -> None:
        """Freshly inserted rows: consecutive ids extend the last run (no other row can be among
        them), other ids start a run."""
        if not new_pks:
            return
        self._last = None
        self.pks.extend(new_pks)
        for pk in new_pks:
            if self.runs and self.runs[-1][1] + 1 == pk:
                first, _, count = self.runs[-1]
                self.runs[-1] = (first, pk, count + 1)
            else:
                self.runs.append((pk, pk, 1))

    def compact(self) -> None:
        """Merge the unsettled runs with their predecessor where the thread has no other row
        between them (one query per few hundred gaps, called by ``store``); the runs before the last
        are settled."""
        start = min(self.settled, len(self.runs) - 1)
        unsettled = merged_runs(self.runs[start:])  # runs of consecutive ids need no query
        gaps = [(unsettled[i][1], unsettled[i + 1][0]) for i in range(len(unsettled) - 1)]
        between = statements.count_thread_messages_between(*self.thread.key(), gaps=[gap for gap in gaps if gap[0] < gap[1]])
        runs = [*self.runs[:start], unsettled[0]]
        for (after, before), run in zip(gaps, unsettled[1:]):
            if after < before and between[(after, before)] == 0:
                first, _, count = runs[-1]
                runs[-1] = (first, run[1], count + run[2])
            else:
                runs.append(run)
        self.runs = runs
        self.settled = len(runs) - 1


def known_rows(pairs: Sequence[tuple[BaseMessage, int]]) -> MessageList:
    """A list of messages already stored as the given rows (see ``DjangoSaver.remember_rows``):
    a base that lets ``store`` refer to those rows."""
    return MessageList(runs=tuple((pk, pk, 1) for _, pk in pairs), pks=array("q", [pk for _, pk in pairs]), messages=[m for m, _ in pairs])


# -- Reading ---------------------------------------------------------------------------------


def load(thread: ThreadRows, runs: tuple[Run, ...], bases: Sequence[MessageList], using: str) -> MessageList:
    """The stored list ``runs``; rows a cached list in ``bases`` already holds are not read."""
    for base in bases:
        if base.runs == runs:
            return base
    base, reused_runs = _longest_run_prefix(runs, bases)
    pks = array("q")
    messages: list[BaseMessage] = []
    todo: list[Run] = []
    if base is not None:
        kept = sum(count for _, _, count in base.runs[:reused_runs])
        pks.extend(base.pks[:kept])
        messages.extend(base.messages[:kept])
        if _extends(base.runs, runs, reused_runs):
            # The cached list's next run is the start of this list's run: read the rest of it.
            first, last, count = base.runs[reused_runs]
            pks.extend(base.pks[kept : kept + count])
            messages.extend(base.messages[kept : kept + count])
            _, new_last, new_count = runs[reused_runs]
            todo.append((last + 1, new_last, new_count - count))
            reused_runs += 1
    todo.extend(runs[reused_runs:])
    for pk, message in _read_runs(thread, todo, using):
        pks.append(pk)
        messages.append(message)
    return MessageList(runs=runs, pks=pks, messages=messages)


def _longest_run_prefix(runs: tuple[Run, ...], bases: Sequence[MessageList]) -> tuple[MessageList | None, int]:
    """The cached list that holds the most of ``runs``'s first messages, and how many runs
    it shares whole (its next run may be the start of the matching run of ``runs``)."""
    best, best_shared, best_items = None, 0, 0
    for base in bases:
        shared = 0
        while shared < min(len(base.runs), len(runs)) and base.runs[shared] == runs[shared]:
            shared += 1
        items = sum(count for _, _, count in base.runs[:shared])
        if _extends(base.runs, runs, shared):
            items += base.runs[shared][2]
        if items > best_items:
            best, best_shared, best_items = base, shared, items
    return best, best_shared


def _extends(old: Sequence[Run], new: Sequence[Run], index: int) -> bool:
    """Whether run ``index`` of ``new`` starts with run ``index`` of ``old``."""
    if index >= min(len(old), len(new)):
        return False
    (first, last, count), (new_first, new_last, new_count) = old[index], new[index]
    return first == new_first and last <= new_last and count <= new_count


def stored_thread(thread: ThreadRows, using: str, before: int | None = None) -> MessageList:
    """Every complete message the conversation thread holds (with an id below ``before``, if
    given), oldest first, as a stored list: its runs skip the rows that are not (failed or
    interrupted replies, unreadable rows)."""
    runs: list[Run] = []
    pks = array("q")
    messages: list[BaseMessage] = []
    previous_included = False
    rows = thread.queryset(using)
    if before is not None:
        rows = rows.filter(pk__lt=before)
    for pk, status, content in rows.order_by("pk").values_list("pk", "status", "content").iterator():
        message = _decode(pk, content) if status == ConversationMessage.Status.COMPLETE else None
        if message is None:
            previous_included = False
            continue
        if previous_included:
            first, _, count = runs[-1]
            runs[-1] = (first, pk, count + 1)
        else:
            runs.append((pk, pk, 1))
        pks.append(pk)
        messages.append(message)
        previous_included = True
    return MessageList(runs=tuple(runs), pks=pks, messages=messages)


def _read_runs(thread: ThreadRows, runs: Sequence[Run], using: str) -> list[tuple[int, BaseMessage]]:
    """The rows of ``runs``, decoded, in list order (unreadable rows are left out, logged)."""
    runs = [run for run in runs if run[2] > 0 and run[0] <= run[1]]
    if not runs:
        return []
    if len(runs) <= _MAX_RANGES_PER_QUERY:
        ranges = [(first, last) for first, last, _ in runs]
    else:
        ranges = [(min(run[0] for run in runs), max(run[1] for run in runs))]
    decoded: dict[int, BaseMessage | None] = {}
    result = []
    with _collection_paused(sum(run[2] for run in runs)):
        rows = statements.thread_message_rows(*thread.key(), ranges, using)
        row_pks = [pk for pk, _ in rows]
        for first, last, count in runs:
            start, stop = bisect_left(row_pks, first), bisect_right(row_pks, last)
            if stop - start != count:
                logger.warning(
                    "A checkpoint's messages %s-%s of conversation %s: %s rows stored, %s expected (rows were deleted?).",
                    first, last, thread.conversation_id, stop - start, count,
                )  # fmt: skip
            for pk, content in rows[start:stop]:
                if pk not in decoded:
                    decoded[pk] = _decode(pk, content)
                if decoded[pk] is not None:
                    result.append((pk, decoded[pk]))
    return result


@contextmanager
def _collection_paused(rows: int) -> Iterator[None]:
    """Pause Python's cyclic garbage collector while many rows are read (called by
    ``_read_runs``). Decoding 10,000 messages allocates a few hundred
    thousand objects, which start several full collections of the whole process: in a process
    holding other long threads, about two thirds of a first read's time
    (bench/results/checkpointer.md). Nothing decoded is garbage, so there is nothing to collect
    meanwhile; the collector runs again afterwards (unless it was off already)."""
    if rows < _PAUSE_COLLECTION_ROWS or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _decode(pk: int, content: Any) -> BaseMessage | None:
    try:
        return codec.decode(content)
    except codec.CodecError:
        logger.warning("Skipping unreadable stored message #%s of a checkpoint.", pk, exc_info=True)
        return None
