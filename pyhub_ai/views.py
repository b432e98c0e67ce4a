"""The ready-made chat pages (``path("chat/", include("pyhub_ai.urls"))``).

A signed-in user's own conversations: the list, search, a new one (POST), the chat page, rename
and delete. Every view looks conversations up through ``OwnConversationMixin.get_queryset()``, so a
conversation that does not exist and someone else's are the same 404 (no probing), and no GET
creates or changes anything. The chat page's websocket is served by ``pyhub_ai.routing``.
A project with its own views (the django-pyhub-ai tutorial's way) does not need this module.
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse, reverse_lazy
from django.views.generic import DeleteView, DetailView, ListView, TemplateView, UpdateView, View

from .conf import conf
from .models import Conversation
from .routing import websocket_url
from .search import search_messages
from .usage_report import MonthUsage, month_usage

#: How many conversations the chat page's sidebar lists.
SIDEBAR_SIZE = 30


class OwnConversationMixin(LoginRequiredMixin):
    """Restricts every view to the signed-in user's own conversations."""

    model = Conversation
    context_object_name = "conversation"

    def get_queryset(self) -> QuerySet[Conversation]:
        """Called by ``get_object()`` and ``ListView.get_queryset`` users: the user's own only."""
        return Conversation.objects.filter(user=self.request.user)


class ConversationListView(OwnConversationMixin, ListView):
    """The user's conversations, most recent first, with a "New conversation" button and the
    user's usage this month (``get_usage()``)."""

    template_name = "pyhub_ai/conversation_list.html"
    context_object_name = "conversations"
    paginate_by = 50

    def get_usage(self) -> MonthUsage:
        """The user's tokens and cost this month (``pyhub_ai.usage_report.month_usage``)."""
        return month_usage(self.request.user.pk)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["usage"] = self.get_usage()
        context["usage_priced"] = bool(conf.MODEL_PRICES)
        return context


class ConversationSearchView(LoginRequiredMixin, TemplateView):
    """``?q=``: the user's messages in their own conversations that hold the words
    (``pyhub_ai.search``), each linking to its chat page scrolled to the message."""

    template_name = "pyhub_ai/conversation_search.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        query = self.request.GET.get("q", "").strip()[:200]
        hits = [hit for hit in search_messages(self.request.user, query) if hit.message.conversation.user_id == self.request.user.pk] if query else []
        for hit in hits:
            hit.url = reverse("pyhub_ai:conversation_chat", args=[hit.message.conversation_id]) + f"#message-{hit.message.pk}"
        context.update(query=query, hits=hits)
        return context


class ConversationCreateView(LoginRequiredMixin, View):
    """POST: a new, empty conversation of the user's; then its chat page. GET is not allowed."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        conversation = Conversation.objects.create(user=request.user)
        return HttpResponseRedirect(reverse("pyhub_ai:conversation_chat", args=[conversation.pk]))


class ConversationChatView(OwnConversationMixin, DetailView):
    """The chat page of one of the user's conversations, with the others in a sidebar."""

    template_name = "pyhub_ai/conversation_chat.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["ws_url"] = websocket_url(self.object.pk)
        context["conversations"] = self.get_queryset()[:SIDEBAR_SIZE]
        return context


class ConversationRenameView(OwnConversationMixin, UpdateView):
    """A form to change a conversation's title."""

    fields = ["title"]
    template_name = "pyhub_ai/conversation_form.html"

    def get_success_url(self) -> str:
        return reverse("pyhub_ai:conversation_chat", args=[self.object.pk])


class ConversationDeleteView(OwnConversationMixin, DeleteView):
    """Asks, then deletes a conversation with all its messages."""

    template_name = "pyhub_ai/conversation_confirm_delete.html"
    success_url = reverse_lazy("pyhub_ai:conversation_list")

