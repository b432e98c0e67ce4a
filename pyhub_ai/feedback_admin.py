"""Feedback in the admin: every thumbs up or down with its comment, filtered by rating, and
exported as JSON Lines with the reply and its prompt context (``pyhub_ai.feedback``).
Imported by ``pyhub_ai.admin``, whose conversation list filters by feedback (``FeedbackFilter``)."""
from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from . import feedback
from .models import Conversation, MessageFeedback


class FeedbackFilter(admin.SimpleListFilter):
    """Conversations with a thumbs up, a thumbs down, or a comment on any of their replies."""

    title = _("feedback")
    parameter_name = "feedback"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("up", _("thumbs up")), ("down", _("thumbs down")), ("comment", _("with a comment")), ("any", _("any feedback"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
        given = MessageFeedback.objects.filter(conversation=OuterRef("pk"))
        if self.value() in feedback.RATINGS:
            given = given.filter(rating=feedback.RATINGS[self.value()])
        elif self.value() == "comment":
            given = given.exclude(comment="")
        elif self.value() != "any":
            return queryset
        return queryset.filter(Exists(given))


def export_feedback(feedback_rows: QuerySet[MessageFeedback]) -> StreamingHttpResponse:
    """A JSON Lines download of ``feedback_rows`` (``pyhub_ai.feedback.export_records``)."""
    lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in feedback.export_records(feedback_rows))
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="feedback-{timezone.now():%Y%m%d-%H%M%S}.jsonl"'
    return response


@admin.register(MessageFeedback)
class MessageFeedbackAdmin(admin.ModelAdmin):
    """Feedback as users gave it: read-only (it is theirs), filtered and exported for evaluation."""

    list_display = ["updated_at", "rating", "short_comment", "reply", "conversation", "user"]
    list_filter = ["rating", "updated_at"]
    list_select_related = ["conversation", "user"]
    search_fields = ["comment", "user__username"]
    actions = ["export_jsonl"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("comment"))
    def short_comment(self, item: MessageFeedback) -> str:
        return Truncator(item.comment).chars(80)

    @admin.display(description=_("reply"))
    def reply(self, item: MessageFeedback) -> str:
        url = reverse("admin:pyhub_ai_conversation_change", args=[item.conversation_id]) + f"#message-{item.message_id}"
        return format_html('<a href="{}">#{}</a>', url, item.message_id)

    @admin.action(description=_("Export the selected feedback with its replies and prompts as JSON Lines"), permissions=["view"])
    def export_jsonl(self, request: HttpRequest, queryset: QuerySet[MessageFeedback]) -> StreamingHttpResponse:
        return export_feedback(MessageFeedback.objects.filter(pk__in=queryset.values("pk")))
