"""Search a user's own messages (the visible ones of people and the model).

``search_messages(user, query)`` is called by the demo's search page (example.views.search). It
reads the full-text index of migration 0006: SQLite's FTS5 table, kept by triggers that index a
reply once it has stopped streaming (migration 0010), with ``unicode61`` words, each term
matched as a prefix, so "스타벅스" finds "스타벅스에서" (Korean particles follow the word); or
PostgreSQL's GIN index (``simple`` configuration, prefix terms, for the same reason); on other
databases it scans with ``icontains``. Only ``user``'s own threads are searched: their
conversations, and their private threads of owner-less ones.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.db import connections, router
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

from .display import message_text
from .models import ConversationMessage

#: Results shown at most.
MAX_RESULTS = 50
#: Characters of context shown around the first match.
CONTEXT = 60

#: Must be written exactly like the index of migration 0006, or the index is not used.
POSTGRES_VECTOR = "to_tsvector('simple', coalesce(content -> 'data' ->> 'content', ''))"

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Hit:
    """A message that matched: its row (with its conversation) and the text around the match."""

    message: ConversationMessage
    before: str
    match: str
    after: str


def terms_of(query: str) -> list[str]:
    """The words of ``query`` (punctuation and operators dropped), at most ten."""
    return _WORD.findall(query)[:10]


def own_messages(user: Any) -> QuerySet[ConversationMessage]:
    """The visible human and AI messages of ``user``'s own threads, but replies still being
    written (``streaming``: SQLite's index has them once they are written, migration 0010)."""
    return ConversationMessage.objects.filter(
        Q(conversation__user=user) | Q(conversation__user__isnull=True),
        user=user,
        visible=True,
        role__in=[ConversationMessage.Role.HUMAN, ConversationMessage.Role.AI],
    ).exclude(status=ConversationMessage.Status.STREAMING)


def search_messages(user: Any, query: str, limit: int = MAX_RESULTS) -> list[Hit]:
    """``user``'s messages that hold every word of ``query`` (as a word or a word's start),
    newest first, each with the text around the first word found."""
    terms = terms_of(query)
    if not terms or not getattr(user, "is_authenticated", False):
        return []
    rows = own_messages(user).select_related("conversation")
    vendor = connections[router.db_for_read(ConversationMessage)].vendor
    if vendor == "sqlite":
        match = " ".join('"' + term.replace('"', '""') + '"*' for term in terms)
        rows = rows.filter(pk__in=RawSQL("SELECT rowid FROM pyhub_ai_message_fts WHERE pyhub_ai_message_fts MATCH %s", [match]))
    elif vendor == "postgresql":
        tsquery = " & ".join(term + ":*" for term in terms)  # terms are \w+ words: nothing to escape
        rows = rows.alias(
            found=RawSQL(f"{POSTGRES_VECTOR} @@ to_tsquery('simple', %s)", [tsquery], output_field=BooleanField())
        ).filter(found=True)
    else:
        for term in terms:
            rows = rows.filter(Q(content__data__content__icontains=term))
    return [hit for hit in (_hit(row, terms) for row in rows.order_by("-pk")[:limit]) if hit is not None]


def _hit(row: ConversationMessage, terms: list[str]) -> Hit | None:
    try:
        text = " ".join(message_text(row.message).split())
    except Exception:  # an unreadable row is no result
        return None
    lowered = text.lower()
    found = [(lowered.find(term.lower()), term) for term in terms if term.lower() in lowered]
    if not found:
        return Hit(row, "", "", text[: CONTEXT * 2])
    start, term = min(found)
    end = start + len(term)
    before = text[max(0, start - CONTEXT):start]
    return Hit(row, ("…" if start > CONTEXT else "") + before, text[start:end], text[end:end + CONTEXT] + ("…" if end + CONTEXT < len(text) else ""))
