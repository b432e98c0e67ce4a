"""The message tree of a thread: edits and regenerated replies as branches.

A thread that never branched is one line of messages in id order (``parent`` stays empty), read
with the plain "newest N rows" query. The first edit or regenerate makes it *branched*
(``make_branched``): every message then names its parent (the older ones are linked in id order,
once), and a ``ThreadBranch`` row says which branch the thread shows. Messages with the same
parent are versions of one another.

The branch shown ends at ``active_leaf()``: the thread's newest message, unless the user switched
to another branch since (``switch_to``), and is read from there up its parents, one primary-key
step per message (``statements.walk_branch``), so a window costs the same whatever the size of
the tree.

Everything here is synchronous: ``DjangoChatMessageHistory`` calls it in its database calls
(``start_turn`` in the transaction that takes the thread's lock).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import OuterRef, Subquery

from . import statements
from .models import ConversationMessage, ThreadBranch


class UnknownMessage(Exception):
    """A message id that is not a (visible) message of this thread; refused like a missing one."""


def branch_state(key: str, thread: dict[str, Any]) -> tuple[bool, int | None]:
    """``(branched, leaf)``: whether the thread has branched, and the last message of the branch
    it shows (``None`` for an empty thread; for a thread that never branched, not looked up)."""
    return state_of(statements.thread_branch(key, thread["conversation_id"], thread["user_id"], thread["visitor_key"]))


def state_of(found: tuple[int, int, int | None] | None) -> tuple[bool, int | None]:
    """``branch_state()`` of what ``statements.thread_branch`` (or ``thread_window``) read:
    ``(leaf, newest when chosen, newest now)``, or ``None`` for a thread that never branched."""
    if found is None:
        return False, None
    leaf, newest_then, newest_now = found
    return True, leaf if newest_now == newest_then else newest_now


def make_branched(key: str, thread: dict[str, Any]) -> int | None:
    """Make the thread branched, if it is not yet: link every message to the one before it (in
    id order) and remember the newest as the branch shown. Returns the active leaf."""
    branched, leaf = branch_state(key, thread)
    if branched:
        return leaf
    rows = ConversationMessage.objects.filter(**thread)
    rows.filter(parent__isnull=True).update(
        parent=Subquery(rows.filter(pk__lt=OuterRef("pk")).order_by("-pk").values("pk")[:1])
    )
    newest = rows.order_by("-pk").values_list("pk", flat=True).first()
    ThreadBranch.objects.update_or_create(
        key=key, defaults={"conversation_id": thread["conversation_id"], "leaf": newest or 0, "newest": newest or 0}
    )
    return newest


def link(rows: Sequence[ConversationMessage], parent_id: int | None) -> None:
    """Chain freshly inserted ``rows`` (in order) under ``parent_id``: each follows the one before.

    The first row's parent is normally set before the insert; the others need the ids the
    insert gave (SQLite and PostgreSQL return them), so they are set with one UPDATE.
    """
    previous = parent_id
    changed = []
    for row in rows:
        if row.parent_id != previous:
            row.parent_id = previous
            changed.append(row)
        previous = row.pk
    if changed:
        ConversationMessage.objects.bulk_update(changed, ["parent"])


def thread_row(thread: dict[str, Any], message_id: Any, **conditions: Any) -> ConversationMessage:
    """The visible message ``message_id`` of this thread (raises ``UnknownMessage``): another
    user's message is exactly as unknown as one that does not exist."""
    row = ConversationMessage.objects.filter(pk=message_id, visible=True, **thread, **conditions).first()
    if row is None:
        raise UnknownMessage(message_id)
    return row


def human_of(thread: dict[str, Any], ai_row: ConversationMessage) -> ConversationMessage:
    """The user's message that the reply ``ai_row`` answers: the human message of its turn or,
    for rows stored without a turn (``add_messages``), the nearest human message above it.
    Raises ``UnknownMessage`` for a reply to the hidden conversation starter, which cannot be
    regenerated. Call it in a thread that has branched (``make_branched``)."""
    humans = ConversationMessage.objects.filter(role=ConversationMessage.Role.HUMAN, **thread)
    human = humans.filter(turn_id=ai_row.turn_id).first() if ai_row.turn_id is not None else None
    if human is None:
        above = statements.walk_branch(
            ai_row.pk, thread["conversation_id"], thread["user_id"], thread["visitor_key"],
            counted="role", value=ConversationMessage.Role.HUMAN, limit=1,
        )
        human = humans.filter(pk=above[-1][0]).first() if above else None
    if human is None or not human.visible:
        raise UnknownMessage(ai_row.pk)
    return human


def switch_to(key: str, thread: dict[str, Any], message_id: Any) -> int:
    """Show the branch through the visible message ``message_id`` (one of several versions),
    down to its newest descendant on the newest path; returns that leaf."""
    thread_row(thread, message_id)
    newest = make_branched(key, thread)
    leaf = statements.newest_descendant(int(message_id))
    newest_now = statements.thread_newest(thread["conversation_id"], thread["user_id"], thread["visitor_key"])
    ThreadBranch.objects.filter(key=key).update(leaf=leaf, newest=newest_now or newest or 0)
    return leaf


def siblings(thread: dict[str, Any], rows: Iterable[ConversationMessage]) -> dict[int, list[int]]:
    """For each of ``rows`` that has other versions: the ids of all its versions (visible
    messages with the same parent, itself included), oldest first. One query."""
    rows = list(rows)
    parents = {row.parent_id for row in rows if row.parent_id is not None}
    has_root = any(row.parent_id is None for row in rows)
    if not parents and not has_root:
        return {}
    versions = ConversationMessage.objects.filter(visible=True, **thread)
    if has_root:
        versions = versions.filter(parent__in=parents) | versions.filter(parent__isnull=True)
    else:
        versions = versions.filter(parent__in=parents)
    by_parent: dict[Any, list[int]] = defaultdict(list)
    for pk, parent_id in versions.order_by("pk").values_list("pk", "parent_id"):
        by_parent[parent_id].append(pk)
    return {row.pk: by_parent[row.parent_id] for row in rows if len(by_parent.get(row.parent_id, ())) > 1}


def versions_of(rows: Iterable[ConversationMessage]) -> dict[int, list[int]]:
    """``siblings()`` for rows of any threads (the admin's page of a conversation): one lookup
    per thread to see whether it branched, one query per thread that did."""
    from . import locks

    by_thread: dict[tuple[Any, Any, str], list[ConversationMessage]] = defaultdict(list)
    for row in rows:
        by_thread[row.conversation_id, row.user_id, row.visitor_key].append(row)
    versions: dict[int, list[int]] = {}
    for (conversation_id, user_id, visitor_key), thread_rows in by_thread.items():
        thread = {"conversation_id": conversation_id, "user_id": user_id, "visitor_key": visitor_key}
        if branch_state(locks.thread_key(conversation_id, user_id, visitor_key), thread)[0]:
            versions.update(siblings(thread, thread_rows))
    return versions
