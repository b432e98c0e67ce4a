"""The admin: conversations with their messages shown as a readable thread."""
from __future__ import annotations

import json

from django.contrib import admin
from django.db.models import Count, Max
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from . import codec
from .display import message_text
from .models import Conversation, ConversationMessage


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


class ConversationMessageInline(admin.TabularInline):
    model = ConversationMessage
    extra = 0
    can_delete = False
    ordering = ["pk"]
    fields = ["created_at", "user", "role", "status", "visible", "rendered"]
    readonly_fields = fields
    show_change_link = True

    @admin.display(description=_("message"))
    def rendered(self, row: ConversationMessage):
        return render_message(row)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "message_count", "input_tokens", "output_tokens", "last_activity"]
    list_filter = ["created_at", "updated_at"]
    search_fields = ["title", "user__username", "session_id"]
    raw_id_fields = ["user"]
    readonly_fields = ["input_tokens", "output_tokens", "created_at", "updated_at"]
    inlines = [ConversationMessageInline]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user").annotate(
            _message_count=Count("messages"), _last_message_at=Max("messages__created_at")
        )

    @admin.display(description=_("messages"), ordering="_message_count")
    def message_count(self, conversation: Conversation) -> int:
        return conversation._message_count

    @admin.display(description=_("last activity"), ordering="_last_message_at")
    def last_activity(self, conversation: Conversation):
        return conversation._last_message_at or conversation.updated_at


@admin.register(ConversationMessage)
class ConversationMessageAdmin(admin.ModelAdmin):
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
