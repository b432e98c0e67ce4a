"""The one place that turns conversations into export records and back.

Used by the ``pyhub_ai_export`` and ``pyhub_ai_import`` management commands. Messages always
go through :mod:`pyhub_ai.codec`: an export carries each stored payload as it is, an import
checks every payload with ``codec.decode`` before anything is written.

The export format is JSON Lines: a header, then each conversation followed by its messages::

    {"record": "header", "format": "pyhub_ai.export", "version": 1}
    {"record": "conversation", "id": 7, "title": "...", "owner": "alice", ...}
    {"record": "message", "id": 40, "parent": 39, "conversation": 7, "user": "alice", "role": "human", "content": {...}, ...}
    {"record": "branch", "conversation": 7, "user": "alice", "visitor_key": "", "leaf": 44}

A message's ``id`` and ``parent`` (optional: files written before branches have neither) keep the
message tree (``pyhub_ai.branches``); a ``branch`` record, after the conversation's messages,
says which branch a thread that has branched shows. Ids are the exported ones; an import
gives new ones and links them the same way.

Importing is done in passes over the same lines: :func:`check_export` validates the whole
file, :func:`create_conversations` and then :func:`create_messages` write it in batches.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, router
from django.db.models import Model, Q, QuerySet
from django.utils import timezone
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from . import branches, codec, locks
from .attachments import message_attachments
from .display import message_text
from .history import DjangoChatMessageHistory
from .models import Conversation, ConversationMessage, ThreadBranch, role_of
from .tokens import count_tokens

FORMAT = "pyhub_ai.export"
VERSION = 1

#: Conversation fields an export record carries as they are (besides ``id`` and ``owner``).
CONVERSATION_FIELDS = (
    "title",
    "session_id",
    "metadata",
    "created_at",
    "updated_at",
    "expires_at",
    "input_tokens",
    "output_tokens",
)
#: Message fields an export record carries as they are (besides ``conversation`` and ``user``).
MESSAGE_FIELDS = (
    "visitor_key",
    "role",
    "status",
    "visible",
    "turn_id",
    "idempotency_key",
    "token_count",
    "created_at",
    "content",
)
_REQUIRED_VALUES = ("created_at", "updated_at")


class TransferError(ValueError):
    """An export file or a Redis history that cannot be imported; the message says where."""


# -- Export ----------------------------------------------------------------------------------


def header_record() -> dict[str, Any]:
    """The first record of every export."""
    return {"record": "header", "format": FORMAT, "version": VERSION}


def conversation_record(conversation: Conversation) -> dict[str, Any]:
    """The export record of a conversation (its messages are records of their own)."""
    record: dict[str, Any] = {"record": "conversation", "id": conversation.pk}
    record.update({name: _jsonable(getattr(conversation, name)) for name in CONVERSATION_FIELDS})
    record["owner"] = conversation.user.get_username() if conversation.user_id else None
    return record


def message_record(row: ConversationMessage) -> dict[str, Any]:
    """The export record of a stored message; ``content`` is the codec payload as stored."""
    record: dict[str, Any] = {
        "record": "message",
        "id": row.pk,
        "parent": row.parent_id,
        "conversation": row.conversation_id,
        "user": row.user.get_username() if row.user_id else None,
    }
    record.update({name: _jsonable(getattr(row, name)) for name in MESSAGE_FIELDS})
    return record


def thread_messages(conversation: Conversation, user: Any = None) -> QuerySet[ConversationMessage]:
    """A conversation's messages in pk order; only ``user``'s thread when it has no owner."""
    messages = conversation.messages.select_related("user").order_by("pk")
    if user is not None and conversation.user_id is None:
        messages = messages.filter(user=user)
    return messages


def conversations_of(user: Any) -> QuerySet[Conversation]:
    """The conversations ``user`` owns, and the owner-less ones where ``user`` has a thread."""
    threads = ConversationMessage.objects.filter(user=user).values("conversation_id")
    return Conversation.objects.filter(Q(user=user) | Q(user__isnull=True, pk__in=threads))


def export_records(conversations: QuerySet[Conversation], user: Any = None) -> Iterator[dict[str, Any]]:
    """Every record of an export, streamed from the database (``user``: see thread_messages)."""
    yield header_record()
    for conversation in conversations.select_related("user").order_by("pk").iterator():
        yield conversation_record(conversation)
        threads: dict[tuple[Any, str], str | None] = {}
        for row in thread_messages(conversation, user).iterator():
            record = message_record(row)
            threads[row.user_id, row.visitor_key] = record["user"]
            yield record
        yield from branch_records(conversation, threads)


def branch_records(conversation: Conversation, threads: dict[tuple[Any, str], str | None]) -> Iterator[dict[str, Any]]:
    """The branch shown by each of ``threads`` (``(user id, visitor key)`` to username) of
    ``conversation`` that has branched."""
    for (user_id, visitor_key), username in threads.items():
        thread = {"conversation_id": conversation.pk, "user_id": user_id, "visitor_key": visitor_key}
        branched, leaf = branches.branch_state(locks.thread_key(conversation.pk, user_id, visitor_key), thread)
        if branched:
            yield {"record": "branch", "conversation": conversation.pk, "user": username, "visitor_key": visitor_key, "leaf": leaf}


def markdown_transcript(conversations: QuerySet[Conversation], user: Any = None) -> Iterator[str]:
    """A readable transcript, line by line (no line endings): each conversation, then its visible
    messages, thread by thread for an owner-less conversation (``user``: see thread_messages)."""
    for conversation in conversations.select_related("user").order_by("pk").iterator():
        yield from _markdown_heading(conversation)
        thread = None
        rows = thread_messages(conversation, user).filter(visible=True).order_by("user_id", "visitor_key", "pk")
        for row in rows.iterator():
            if conversation.user_id is None and (row.user_id, row.visitor_key) != thread:
                thread = (row.user_id, row.visitor_key)
                yield from (f"### {_thread_label(row)}", "")
            yield from (_markdown_message(row), "")


def _markdown_heading(conversation: Conversation) -> Iterator[str]:
    owner = conversation.user.get_username() if conversation.user_id else "none (each user has a private thread)"
    yield from (f"## {conversation.title or f'Conversation #{conversation.pk}'}", "")
    yield f"- Owner: {owner}"
    yield f"- Created: {_when(conversation.created_at)}"
    yield f"- Updated: {_when(conversation.updated_at)}"
    if conversation.expires_at:
        yield f"- Expires: {_when(conversation.expires_at)}"
    yield ""


def _when(value: Any) -> str:
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return f"{value:%Y-%m-%d %H:%M:%S %Z}".rstrip()


def _thread_label(row: ConversationMessage) -> str:
    if row.user_id:
        return f"{row.user.get_username()}'s thread"
    if row.visitor_key:
        return f"Anonymous visitor {row.visitor_key[:8]}"
    return "Anonymous thread"


_STATUS_NOTES = {
    ConversationMessage.Status.ERROR: " _(failed)_",
    ConversationMessage.Status.INTERRUPTED: " _(interrupted)_",
    ConversationMessage.Status.STREAMING: " _(incomplete)_",
}


def _markdown_message(row: ConversationMessage) -> str:
    note = _STATUS_NOTES.get(row.status, "")
    try:
        message = row.message
    except codec.CodecError:
        return f"**{row.get_role_display()}**: _[unreadable message]_{note}"
    speaker = {"human": "You", "ai": "Assistant", "system": "System"}.get(row.role, "Tool")
    if isinstance(message, ToolMessage):
        speaker = f"Tool ({message.name or message.tool_call_id})"
        note = note or (" _(error)_" if message.status == "error" else "")
    lines = [f"**{speaker}**: {message_text(message)}{note}"]
    for file in message_attachments(message):  # images as Markdown images: thumbnails where it is rendered
        lines.append(f"- ![{file['name']}]({file['url']})" if file["type"].startswith("image/") else f"- Attachment: [{file['name']}]({file['url']})")
    for call in message.tool_calls if isinstance(message, AIMessage) else []:
        arguments = ", ".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in call["args"].items())
        lines.append(f"- Tool call: `{call['name']}({arguments})`")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    """Datetimes as full ISO 8601 (microseconds kept), UUIDs as strings, the rest as is."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is not None and not isinstance(value, (str, int, float, bool, dict, list)):
        return str(value)
    return value


# -- Import ----------------------------------------------------------------------------------


@dataclass
class ExportSummary:
    """What :func:`check_export` found in a valid export file."""

    conversations: int = 0
    messages: int = 0
    usernames: set[str] = field(default_factory=set)
    session_ids: set[str] = field(default_factory=set)


def iter_records(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for every non-blank line; the first must be the header."""
    header_seen = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise TransferError(f"Line {number}: not valid JSON ({exc}).") from exc
        if not isinstance(record, dict) or "record" not in record:
            raise TransferError(f"Line {number}: expected a JSON object with a 'record' key.")
        if not header_seen:
            if record != header_record():
                raise TransferError(
                    f"Line {number}: expected the header {json.dumps(header_record())}; "
                    "is this a file written by pyhub_ai_export (of a supported version)?"
                )
            header_seen = True
            continue
        yield number, record
    if not header_seen:
        raise TransferError("The file is empty; expected a file written by pyhub_ai_export.")


def check_export(lines: Iterable[str]) -> ExportSummary:
    """Validate a whole export (every field, and every message with ``codec.decode``)."""
    summary = ExportSummary()
    conversation_ids: set[int] = set()
    message_ids: dict[int, int] = {}  # exported message id -> its conversation's exported id
    for number, record in iter_records(lines):
        try:
            _check_tree(record, message_ids)
            _check_record(record, conversation_ids, summary)
        except (TransferError, codec.CodecError) as exc:
            raise TransferError(f"Line {number}: {exc}") from exc
    return summary


def _check_record(record: dict[str, Any], conversation_ids: set[int], summary: ExportSummary) -> None:
    kind = record["record"]
    if kind == "conversation":
        conversation = conversation_from_record(record)
        if record["id"] in conversation_ids:
            raise TransferError(f"conversation {record['id']} appears twice.")
        if conversation.session_id is not None and conversation.session_id in summary.session_ids:
            raise TransferError(f"session_id {conversation.session_id!r} appears twice.")
        conversation_ids.add(record["id"])
        summary.conversations += 1
        summary.usernames.update(_usernames(record, "owner"))
        if conversation.session_id is not None:
            summary.session_ids.add(conversation.session_id)
    elif kind == "branch":
        if record.get("conversation") not in conversation_ids:
            raise TransferError(f"branch of conversation {record.get('conversation')!r}, whose record does not come before it.")
        summary.usernames.update(_usernames(record, "user"))
    elif kind == "message":
        message_from_record(record)
        if not isinstance(record["conversation"], int) or record["conversation"] not in conversation_ids:
            raise TransferError(f"message of conversation {record['conversation']!r}, whose record does not come before it.")
        codec.decode(record["content"])
        summary.messages += 1
        summary.usernames.update(_usernames(record, "user"))
    else:
        raise TransferError(f"unknown record type {kind!r}.")


def _check_tree(record: dict[str, Any], message_ids: dict[int, int]) -> None:
    """A message's optional ``id`` is new and its ``parent`` an earlier message of the same
    conversation; a branch's ``leaf`` is a message of its conversation."""
    if record["record"] == "message" and "id" in record:
        pk, parent = record["id"], record.get("parent")
        if not isinstance(pk, int) or isinstance(pk, bool) or pk in message_ids:
            raise TransferError(f"message id {pk!r} is not a new integer.")
        if parent is not None and message_ids.get(parent, object()) != record.get("conversation"):
            raise TransferError(f"message {pk}: its parent {parent!r} is not an earlier message of its conversation.")
        message_ids[pk] = record.get("conversation")
    elif record["record"] == "branch":
        if not isinstance(record.get("visitor_key"), str):
            raise TransferError("branch record lacks its visitor_key.")
        if message_ids.get(record.get("leaf"), object()) != record.get("conversation"):
            raise TransferError(f"branch: its leaf {record.get('leaf')!r} is not a message of its conversation.")


def conversation_from_record(record: dict[str, Any], owner: Any = None) -> Conversation:
    """An unsaved, validated conversation (its timestamps still need restoring after insert)."""
    _require(record, ("id", "owner", *CONVERSATION_FIELDS))
    if not isinstance(record["id"], int):
        raise TransferError(f"conversation id must be an integer, got {record['id']!r}.")
    conversation = Conversation(user=owner, **{name: record[name] for name in CONVERSATION_FIELDS})
    _clean(conversation, exclude=["id", "user"])
    return conversation


def message_from_record(record: dict[str, Any], conversation_id: Any = None, user: Any = None) -> ConversationMessage:
    """An unsaved, validated message row (``created_at`` still needs restoring after insert)."""
    _require(record, ("conversation", "user", *MESSAGE_FIELDS))
    row = ConversationMessage(conversation_id=conversation_id, user=user, **{name: record[name] for name in MESSAGE_FIELDS})
    _clean(row, exclude=["id", "conversation", "user"])
    return row


def create_conversations(lines: Iterable[str], users: dict[str, Any], batch_size: int = 1000) -> dict[int, Any]:
    """Insert the conversations of a checked export; returns their new pks by exported id.

    ``users`` maps usernames to users; a name mapped to ``None`` is imported without an owner.
    """
    new_pks: dict[int, Any] = {}
    batch: list[tuple[int, Conversation]] = []
    for _, record in iter_records(lines):
        if record["record"] == "conversation":
            batch.append((record["id"], conversation_from_record(record, owner=users.get(record["owner"]))))
        if len(batch) >= batch_size:
            new_pks.update(_insert_conversations(batch))
            batch = []
    new_pks.update(_insert_conversations(batch))
    return new_pks


def create_messages(lines: Iterable[str], new_pks: dict[int, Any], users: dict[str, Any], batch_size: int = 1000) -> int:
    """Insert the messages of a checked export into the conversations ``create_conversations``
    made, linked into the same tree, and the branch each thread shows."""
    count = 0
    new_ids: dict[int, int] = {}  # exported message id -> new pk
    batch: list[tuple[dict[str, Any], ConversationMessage]] = []
    shown: list[dict[str, Any]] = []
    for _, record in iter_records(lines):
        if record["record"] == "message":
            user = users.get(record["user"])
            batch.append((record, message_from_record(record, conversation_id=new_pks[record["conversation"]], user=user)))
        elif record["record"] == "branch":
            shown.append(record)
        if len(batch) >= batch_size:
            count += _insert_messages(batch, new_ids)
            batch = []
    count += _insert_messages(batch, new_ids)
    for record in shown:
        user = users.get(record["user"])
        thread = {"conversation_id": new_pks[record["conversation"]], "user_id": user.pk if user else None, "visitor_key": record["visitor_key"]}
        key = locks.thread_key(thread["conversation_id"], thread["user_id"], thread["visitor_key"])
        newest = ConversationMessage.objects.filter(**thread).order_by("-pk").values_list("pk", flat=True).first()
        ThreadBranch.objects.update_or_create(
            key=key, defaults={"conversation_id": thread["conversation_id"], "leaf": new_ids[record["leaf"]], "newest": newest}
        )
    return count


def _insert_messages(batch: list[tuple[dict[str, Any], ConversationMessage]], new_ids: dict[int, int]) -> int:
    """Insert a batch of messages, then link each to its parent's new pk."""
    count = _insert_keeping_timestamps([row for _, row in batch], ["created_at"])
    new_ids.update({record["id"]: row.pk for record, row in batch if "id" in record})
    linked = []
    for record, row in batch:
        if record.get("parent") is not None:
            row.parent_id = new_ids[record["parent"]]
            linked.append(row)
    if linked:
        ConversationMessage.objects.bulk_update(linked, ["parent"])
    return count


def _insert_conversations(batch: list[tuple[int, Conversation]]) -> dict[int, Any]:
    _insert_keeping_timestamps([conversation for _, conversation in batch], ["created_at", "updated_at"])
    return {old_pk: conversation.pk for old_pk, conversation in batch}


def _insert_keeping_timestamps(objs: Sequence[Model], names: list[str]) -> int:
    """Insert ``objs`` and set their ``auto_now``/``auto_now_add`` fields back to the given values.

    Inserting always stamps those fields with the current time, so they are restored with
    one ``bulk_update`` per batch.
    """
    if not objs:
        return 0
    model = type(objs[0])
    stamps = [[getattr(obj, name) for name in names] for obj in objs]
    if connections[router.db_for_write(model)].features.can_return_rows_from_bulk_insert:
        model._default_manager.bulk_create(objs)
    else:  # MySQL: bulk_create cannot give the new pks back.
        for obj in objs:
            obj.save(force_insert=True)
    for obj, values in zip(objs, stamps):
        for name, value in zip(names, values):
            setattr(obj, name, value)
    model._default_manager.bulk_update(objs, names)
    return len(objs)


def _require(record: dict[str, Any], names: Iterable[str]) -> None:
    missing = [name for name in names if name not in record]
    missing += [name for name in _REQUIRED_VALUES if record.get(name, "") is None]
    if missing:
        raise TransferError(f"{record['record']} record lacks {', '.join(missing)}.")


def _clean(obj: Model, exclude: list[str]) -> None:
    """Validate and convert the field values (ISO strings become datetimes, and so on)."""
    try:
        obj.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in exc.message_dict.items())
        raise TransferError(f"invalid {obj._meta.model_name}: {problems}") from exc


def _usernames(record: dict[str, Any], key: str) -> set[str]:
    name = record[key]
    if name is not None and not isinstance(name, str):
        raise TransferError(f"{key} must be a username or null, got {name!r}.")
    return {name} if name else set()


# -- LangChain's RedisChatMessageHistory -------------------------------------------------------


def redis_sessions(client: Any, key_prefix: str, session_ids: Sequence[str] | None = None) -> dict[str, str]:
    """Redis list keys by session id: the given sessions, or every ``<key_prefix>*`` list (SCAN)."""
    if session_ids:
        keys = {session_id: key_prefix + session_id for session_id in session_ids}
        missing = sorted(session_id for session_id, key in keys.items() if client.type(key) != b"list")
        if missing:
            raise TransferError(f"No Redis list {key_prefix}<session> for session(s): {', '.join(missing)}.")
        return keys
    pattern = "".join(f"\\{char}" if char in "*?[]\\" else char for char in key_prefix) + "*"
    found = {}
    for raw_key in client.scan_iter(match=pattern, count=1000):
        if client.type(raw_key) == b"list":  # (SCAN's TYPE filter needs Redis 6)
            key = raw_key.decode("utf-8")
            found[key.removeprefix(key_prefix)] = key
    return dict(sorted(found.items()))


def read_redis_history(client: Any, key: str) -> list[BaseMessage]:
    """The messages of one ``RedisChatMessageHistory`` list, oldest first.

    ``RedisChatMessageHistory.add_message`` LPUSHes ``json.dumps(message_to_dict(message))``,
    so the list holds the newest message first; the items are the codec's form without ``v``.
    """
    newest_first = client.lrange(key, 0, -1)
    messages = []
    for index, item in enumerate(reversed(newest_first)):
        try:
            message = codec.decode(item.decode("utf-8"))
        except (codec.CodecError, UnicodeDecodeError) as exc:
            raise TransferError(f"{key} item {index} (oldest first): {exc}") from exc
        messages.append(message)
    return messages


def store_messages(conversation: Conversation, messages: Sequence[BaseMessage]) -> int:
    """Append ``messages`` as complete rows to the owner's thread (for an owner-less one: no user,
    the thread ``DjangoChatMessageHistory(session_id)`` reads)."""
    DjangoChatMessageHistory(conversation=conversation, user=conversation.user).add_messages(messages)
    return len(messages)


# -- django-pyhub-ai rows ----------------------------------------------------------------------


def upgrade_legacy_row(row: ConversationMessage) -> None:
    """Rewrite a django-pyhub-ai ``{"_type", "_value"}`` row in the current codec form (unsaved).

    Raises ``codec.CodecError`` when the row cannot be read; it is then left as it was.
    """
    message = codec.decode(row.content)
    row.content = codec.encode(message)
    row.role = role_of(message)
    row.token_count = count_tokens(message)
