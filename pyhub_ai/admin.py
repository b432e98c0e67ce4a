"""The admin: conversations with their messages shown as a readable, paginated thread.

The conversation list shows each conversation's owner, message count, token totals, last
activity and the status of its last turn, and searches titles, owners and message text. A
conversation's page shows its thread like the chat page does (read-only, 100 messages a page,
``?page=``); it and the list can export conversations (JSON Lines or Markdown, the formats of
``manage.py pyhub_ai_export``, from :mod:`pyhub_ai.transfer`) and clear their messages.

Everything shown is escaped: message text is text, and the Markdown of AI replies is rendered
in the browser by the chat page's ``markdown.js`` from that escaped text.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, gettext_lazy as _, ngettext
from langchain_core.messages import AIMessage, ToolMessage

from . import branches, codec, transfer
from .display import message_text
from .feedback_admin import FeedbackFilter, export_feedback
from .attachment_views import serve_attachment
from .attachments import message_attachments
from .models import Attachment, Conversation, ConversationMessage, MessageFeedback

#: Messages per page of a conversation's thread in the admin.
THREAD_PAGE_SIZE = 100
#: Rows shown of a tool's table result.
ADMIN_TABLE_ROWS = 50
#: Image URLs shown: site-relative or http(s) (never javascript:, data: ...).
_SAFE_URL = re.compile(r"^(?:https?://|/(?!/))", re.IGNORECASE)

Status = ConversationMessage.Status


def render_message(row: ConversationMessage):
    """A message as escaped HTML: its text, its tool calls, or a notice if it is unreadable."""
    try:
        message = row.message
    except codec.CodecError as exc:
        return format_html('<span class="pyhub-ai-unreadable">{}</span>', _("Unreadable message: %s") % exc)
    text = format_html('<div style="white-space: pre-wrap">{}</div>', message_text(message) or "—")
    tool_calls = getattr(message, "tool_calls", None) or []
    if not tool_calls:
        return text
    calls = format_html_join(
        "", "<li><code>{}({})</code></li>", ((call["name"], json.dumps(call["args"], ensure_ascii=False)) for call in tool_calls)
    )
    return format_html("{}<div>{}</div><ul>{}</ul>", text, _("Tool calls:"), calls)


# -- The thread on a conversation's page --------------------------------------------------------


@dataclass
class ThreadItem:
    """One message of the thread, ready for admin/pyhub_ai/conversation/thread.html."""

    row: ConversationMessage
    text: str = ""
    markdown: bool = False
    tool_name: str = ""
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    unreadable: str = ""
    thread: str = ""
    image: dict[str, str] | None = None
    table: dict[str, Any] | None = None
    version: int = 0  # with versions: which one this is (1-based), of how many
    versions: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)  # a user's attachments, admin URLs

    @property
    def role(self) -> str:
        return self.row.role

    @property
    def status(self) -> str:
        return self.row.status


def thread_item(row: ConversationMessage, conversation: Conversation, versions: list[int] | None = None) -> ThreadItem:
    """How the admin shows ``row`` (AI text is Markdown, rendered by the page's markdown.js);
    ``versions``: the ids of the row's versions, when its thread has branched."""
    item = ThreadItem(row=row)
    if versions:
        item.version, item.versions = versions.index(row.pk) + 1, len(versions)
    if conversation.user_id is None:
        item.thread = thread_label(row)
    try:
        message = row.message
    except codec.CodecError as exc:
        item.unreadable = gettext("Unreadable message: %s") % exc
        return item
    item.text = message_text(message)
    item.markdown = isinstance(message, AIMessage)
    item.files = [
        {**file, "url": reverse("admin:pyhub_ai_conversation_attachment", args=[conversation.pk, file["id"]])}
        for file in message_attachments(message)
    ]
    if isinstance(message, ToolMessage):
        item.tool_name = message.name or message.tool_call_id
        artifact = message.artifact if isinstance(message.artifact, dict) else {}
        if artifact.get("type") == "image" and _SAFE_URL.match(str(artifact.get("url", ""))):
            item.image = {"url": artifact["url"], "alt": str(artifact.get("alt", ""))}
        elif artifact.get("type") == "table" and isinstance(artifact.get("rows"), list):
            item.table = {
                "columns": artifact.get("columns") or [],
                "rows": artifact["rows"][:ADMIN_TABLE_ROWS],
                "total_rows": artifact.get("total_rows", len(artifact["rows"])),
            }
    if isinstance(message, AIMessage):
        item.tool_calls = [
            {"name": call["name"], "args": json.dumps(call["args"], ensure_ascii=False)} for call in message.tool_calls
        ]
    return item


def thread_label(row: ConversationMessage) -> str:
    """Whose private thread of an owner-less conversation ``row`` belongs to."""
    if row.user_id:
        return gettext("%(user)s's thread") % {"user": row.user.get_username()}
    if row.visitor_key:
        return gettext("Anonymous visitor %(key)s") % {"key": row.visitor_key[:8]}
    return gettext("Thread without a user")


# -- The conversation list ------------------------------------------------------------------------


class LastTurnStatusFilter(admin.SimpleListFilter):
    """Conversations by the status of their newest message (the outcome of the last turn)."""

    title = _("last turn")
    parameter_name = "last_turn"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return list(Status.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
        if self.value() in Status.values:
            return queryset.filter(_last_status=self.value())
        return queryset


def export_response(conversations: QuerySet[Conversation], export_format: str, filename: str) -> StreamingHttpResponse:
    """A download of ``conversations`` as ``manage.py pyhub_ai_export`` writes them."""
    lines: Iterable[str]
    if export_format == "markdown":
        lines, content_type, extension = transfer.markdown_transcript(conversations), "text/markdown", "md"
    else:
        records = transfer.export_records(conversations)
        lines, content_type = (json.dumps(record, ensure_ascii=False) for record in records), "application/x-ndjson"
        extension = "jsonl"
    response = StreamingHttpResponse(_with_newlines(lines), content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}.{extension}"'
    return response


def _plain(queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """The same conversations without the changelist's annotations and ordering."""
    return Conversation.objects.filter(pk__in=queryset.order_by().values("pk"))


def _with_newlines(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        yield line + "\n"


class QueryValuesAdminMixin:
    """A list page whose query string holds a value its field cannot hold (an id or a year out
    of range, a selected "id" that is not a number) is answered like an unknown filter, never
    with a server error: the list again, with Django's "?e=1" notice, or a warning for an action.

    ``get_changelist_instance()`` (called by ``changelist_view()``) turns such values into
    ``IncorrectLookupParameters``; ``response_action()`` checks the selection before the action
    runs.
    """

    def get_changelist_instance(self, request: HttpRequest):
        try:
            return super().get_changelist_instance(request)
        except (ValueError, OverflowError, ValidationError) as exc:
            raise IncorrectLookupParameters(exc) from exc

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        pk = self.model._meta.pk
        try:
            for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
                pk.run_validators(pk.to_python(value))  # a number, in the column's range
        except ValidationError:
            self.message_user(request, gettext("The selected items could not be found. Please select them again."), messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)


@admin.register(Conversation)
class ConversationAdmin(QueryValuesAdminMixin, admin.ModelAdmin):
    list_display = [
        "__str__", "user", "message_count", "tokens", "last_activity", "last_turn_status"
    ]
    list_filter = [LastTurnStatusFilter, FeedbackFilter, ("user", admin.RelatedOnlyFieldListFilter), "created_at", "updated_at"]
    date_hierarchy = "created_at"
    search_fields = ["title", "user__username", "session_id"]
    search_help_text = _("Searches titles, owners' usernames, session ids and the text of messages.")
    raw_id_fields = ["user"]
    readonly_fields = ["input_tokens", "output_tokens", "created_at", "updated_at"]
    actions = ["export_jsonl", "export_markdown", "export_feedback", "clear_messages"]
    change_form_template = "admin/pyhub_ai/conversation/change_form.html"
    clear_confirmation_template = "admin/pyhub_ai/conversation/clear_confirmation.html"
    thread_page_size = THREAD_PAGE_SIZE

    class Media:
        css = {"all": ["pyhub_ai/admin.css"]}
        js = ["pyhub_ai/highlight.js", "pyhub_ai/markdown.js", "pyhub_ai/admin.js"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        newest = ConversationMessage.objects.filter(conversation=OuterRef("pk")).order_by("-pk")
        return super().get_queryset(request).select_related("user").annotate(
            _message_count=Count("messages"),
            _last_message_at=Max("messages__created_at"),
            _last_status=Subquery(newest.values("status")[:1]),
        )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str):
        """The fields of ``search_fields``, or a message whose text contains the whole term."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            text = Q(content__data__content__icontains=term) | Q(content___value__content__icontains=term)  # legacy rows
            in_messages = ConversationMessage.objects.filter(text, conversation=OuterRef("pk"))
            results = results | queryset.filter(Exists(in_messages))
        return results, may_have_duplicates

    @admin.display(description=_("messages"), ordering="_message_count")
    def message_count(self, conversation: Conversation) -> int:
        return conversation._message_count

    @admin.display(description=_("tokens (in / out)"), ordering="input_tokens")
    def tokens(self, conversation: Conversation) -> str:
        """Input and output tokens in one column, so the list fits a 1280 px screen."""
        return f"{conversation.input_tokens:,} / {conversation.output_tokens:,}"

    @admin.display(description=_("last activity"), ordering="_last_message_at")
    def last_activity(self, conversation: Conversation):
        return conversation._last_message_at or conversation.updated_at

    @admin.display(description=_("last turn"), ordering="_last_status")
    def last_turn_status(self, conversation: Conversation):
        status = conversation._last_status
        if not status:
            return "—"
        return format_html('<span class="pyhub-admin-status" data-status="{}">{}</span>', status, Status(status).label)

    # -- the conversation's page -----------------------------------------------------------------

    def get_thread_page(self, request: HttpRequest, conversation: Conversation):
        """The ``?page=`` page of the conversation's messages, every thread, oldest first."""
        rows = conversation.messages.select_related("user").order_by("pk")
        return Paginator(rows, self.thread_page_size).get_page(request.GET.get("page"))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None):
        conversation = self.get_object(request, unquote(object_id))
        extra_context = dict(extra_context or {})
        if conversation is not None and self.has_view_or_change_permission(request, conversation):
            page = self.get_thread_page(request, conversation)
            versions = branches.versions_of(page)
            extra_context.update(
                thread_page=page,
                thread_items=[thread_item(row, conversation, versions.get(row.pk)) for row in page],
                can_clear=self.has_delete_permission(request, conversation),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    # -- export and clear ----------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/export/jsonl/", wrap(self.export_view), {"export_format": "jsonl"}, name="%s_%s_export_jsonl" % info),
            path("<path:object_id>/export/markdown/", wrap(self.export_view), {"export_format": "markdown"}, name="%s_%s_export_markdown" % info),
            path("<path:object_id>/clear/", wrap(self.clear_view), name="%s_%s_clear" % info),
            path("<path:object_id>/attachments/<int:pk>/", wrap(self.attachment_view), name="%s_%s_attachment" % info),
            *super().get_urls(),
        ]

    def _get_object_or_404(self, request: HttpRequest, object_id: str) -> Conversation:
        conversation = self.get_object(request, unquote(object_id))
        if conversation is None:
            raise Http404(gettext("This conversation does not exist."))
        return conversation

    def export_view(self, request: HttpRequest, object_id: str, export_format: str) -> StreamingHttpResponse:
        """Download one conversation (GET; needs the view permission)."""
        conversation = self._get_object_or_404(request, object_id)
        if not self.has_view_or_change_permission(request, conversation):
            raise PermissionDenied
        return export_response(Conversation.objects.filter(pk=conversation.pk), export_format, f"conversation-{conversation.pk}")

    def attachment_view(self, request: HttpRequest, object_id: str, pk: int) -> HttpResponse:
        """A file attached to a message of the conversation (GET; needs the view permission)."""
        conversation = self._get_object_or_404(request, object_id)
        if not self.has_view_or_change_permission(request, conversation):
            raise PermissionDenied
        return serve_attachment(get_object_or_404(Attachment, pk=pk, conversation=conversation))

    def clear_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Asks for confirmation (GET), then deletes every message of the conversation (POST)."""
        conversation = self._get_object_or_404(request, object_id)
        if not self.has_delete_permission(request, conversation):
            raise PermissionDenied
        selected = self.get_queryset(request).filter(pk=conversation.pk)
        if request.method == "POST":
            count = self.perform_clear(request, selected)
            self.message_user(request, self._cleared_message(count), messages.SUCCESS)
            info = self.opts.app_label, self.opts.model_name
            return HttpResponseRedirect(reverse("admin:%s_%s_change" % info, args=[conversation.pk], current_app=self.admin_site.name))
        return self.render_clear_confirmation(request, selected, action=False)

    @admin.action(description=_("Export the selected conversations as JSON Lines"), permissions=["view"])
    def export_jsonl(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> StreamingHttpResponse:
        return export_response(_plain(queryset), "jsonl", f"conversations-{timezone.now():%Y%m%d-%H%M%S}")

    @admin.action(description=_("Export the selected conversations as Markdown"), permissions=["view"])
    def export_markdown(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> StreamingHttpResponse:
        return export_response(_plain(queryset), "markdown", f"conversations-{timezone.now():%Y%m%d-%H%M%S}")

    @admin.action(description=_("Export the feedback on the selected conversations as JSON Lines"), permissions=["view"])
    def export_feedback(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> StreamingHttpResponse:
        """Each feedback with its reply and prompt context (``pyhub_ai.feedback.export_records``)."""
        return export_feedback(MessageFeedback.objects.filter(conversation__in=_plain(queryset)))

    @admin.action(description=_("Clear the messages of the selected conversations"), permissions=["delete"])
    def clear_messages(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse | None:
        """Like "delete selected": a confirmation page first, then the messages are deleted."""
        if request.POST.get("post") == "yes":
            count = self.perform_clear(request, queryset)
            self.message_user(request, self._cleared_message(count), messages.SUCCESS)
            return None
        return self.render_clear_confirmation(request, queryset, action=True)

    def perform_clear(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> int:
        """Delete every message of these conversations (all threads); returns how many."""
        return ConversationMessage.objects.filter(conversation__in=_plain(queryset)).delete()[0]

    def render_clear_confirmation(self, request: HttpRequest, queryset: QuerySet[Conversation], *, action: bool) -> TemplateResponse:
        conversations = list(queryset.order_by("pk"))
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Are you sure?"),
            "opts": self.opts,
            "conversations": conversations,
            "message_counts": [(c, c._message_count) for c in conversations],
            "message_total": sum(c._message_count for c in conversations),
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, self.clear_confirmation_template, context)

    @staticmethod
    def _cleared_message(count: int) -> str:
        return ngettext("Deleted %(count)d message.", "Deleted %(count)d messages.", count) % {"count": count}


@admin.register(ConversationMessage)
class ConversationMessageAdmin(QueryValuesAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "conversation", "user", "role", "status", "excerpt", "created_at"]
    list_filter = ["role", "status", "created_at"]
    list_select_related = ["conversation", "user"]
    raw_id_fields = ["conversation", "user"]
    fields = ["conversation", "user", "visitor_key", "role", "status", "visible", "turn_id", "created_at", "rendered", "content"]
    readonly_fields = ["created_at", "rendered"]

    @admin.display(description=_("text"))
    def excerpt(self, row: ConversationMessage) -> str:
        try:
            text = message_text(row.message)
        except codec.CodecError:
            return str(_("(unreadable)"))
        return text if len(text) <= 80 else text[:80] + "…"

    @admin.display(description=_("message"))
    def rendered(self, row: ConversationMessage):
        return render_message(row)


# LangGraph's checkpoints (pyhub_ai.checkpoint): read-only pages of their own.
from . import checkpoint_admin  # noqa: E402, F401
from . import usage_admin  # noqa: E402, F401
