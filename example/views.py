"""The seed-004 chat view, and the room pages a demo needs around it.

Access rules: every page needs a signed-in user. Rooms are shared — everyone may chat in any
room, each in private threads — but only a room's creator (or staff) may edit or delete it, and
deleting it while other people have conversations in it needs the permission to delete
conversations (``LLMChatRoom.can_delete``; docs/security.md).
A user sees only their own messages: the counts, titles and conversation lists below are
always filtered to ``request.user``, and a conversation somebody else started is a 404.
"""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, F, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import Truncator
from django.utils.translation import gettext, gettext_lazy as _
from django.views.decorators.http import require_POST
from django.views.generic import CreateView, DeleteView, ListView, UpdateView

from example.forms import LLMChatRoomForm
from example.models import LLMChatRoom, RoomConversation
from pyhub_ai import codec
from pyhub_ai.display import message_text
from pyhub_ai.models import Conversation, ConversationMessage
from pyhub_ai.search import search_messages

TITLE_LENGTH = 60


@login_required
def sales_analyst_chat(request: HttpRequest) -> HttpResponse:
    """The data room: the signed-in user's own conversation about ``example/data/sales.csv``.

    GET shows it (or a button to start it); the POST of that button creates it.
    """
    session_id = f"example-sales-{request.user.pk}"
    if request.method == "POST":
        Conversation.objects.get_or_create(
            session_id=session_id, defaults={"user": request.user, "title": gettext("Coffee sales data")}
        )
        return redirect("example:data")
    conversation = Conversation.objects.filter(session_id=session_id, user=request.user).first()
    if conversation is None:
        return render(request, "example/data_start.html")
    return render(request, "example/data_room.html", {"ws_url": f"/ws/example/data/{conversation.pk}/", "conversation": conversation})


@login_required
def language_tutor_chat(request, room_pk: int):
    llm_chat_room, __ = LLMChatRoom.objects.get_or_create(pk=room_pk)
    conversation_pk = llm_chat_room.conversation.pk
    ws_url = f"/ws/example/chat/{conversation_pk}/"
    return render(request, "example/chat_room.html", {
        "ws_url": ws_url,
        **chat_page_context(request, llm_chat_room, llm_chat_room.conversation),
    })


@login_required
def conversation_chat(request: HttpRequest, room_pk: int, conversation_pk: int) -> HttpResponse:
    """A conversation of the room the signed-in user may open (their own, or the room's first)."""
    room = get_object_or_404(LLMChatRoom, pk=room_pk)
    conversation = get_object_or_404(room.conversations_of(request.user), pk=conversation_pk)
    if conversation.pk == room.conversation_id:
        return redirect("example:chat", room_pk=room.pk)
    return render(request, "example/chat_room.html", {
        "ws_url": f"/ws/example/chat/{conversation.pk}/",
        **chat_page_context(request, room, conversation),
    })


@login_required
@require_POST
def conversation_new(request: HttpRequest, room_pk: int) -> HttpResponse:
    """Start a new conversation in the room, owned by the signed-in user."""
    room = get_object_or_404(LLMChatRoom, pk=room_pk)
    with transaction.atomic():
        conversation = Conversation.objects.create(user=request.user)
        RoomConversation.objects.create(room=room, conversation=conversation)
    return redirect("example:conversation", room_pk=room.pk, conversation_pk=conversation.pk)


def chat_page_context(request: HttpRequest, room: LLMChatRoom, conversation: Conversation) -> dict[str, Any]:
    """What example/chat_room.html shows beside the chat: the room and the user's conversations."""
    conversations = conversation_summaries(room, request.user)
    return {
        "room": room,
        "room_title": room_titles([room], request.user)[room.pk],
        "conversation": conversation,
        "conversations": conversations,
        "current_conversation": next((c for c in conversations if c.pk == conversation.pk), None),
        "can_manage": room.can_manage(request.user),
    }


def conversation_summaries(room: LLMChatRoom, user: Any) -> list[Conversation]:
    """``user``'s conversations in ``room``, oldest first, each with ``display_title``,
    ``message_count``, ``last_activity`` and ``url`` (counting only ``user``'s own thread)."""
    own = Q(messages__user=user, messages__visible=True)
    conversations = list(
        room.conversations_of(user)
        .annotate(
            message_count=Count("messages", filter=own),
            last_activity=Max("messages__created_at", filter=own),
            first_message_id=Subquery(_first_human_message(user).filter(conversation=OuterRef("pk")).values("pk")[:1]),
        )
        .order_by("pk")
    )
    texts = first_message_texts(c.first_message_id for c in conversations)
    for number, conversation in enumerate(conversations, start=1):
        conversation.display_title = (
            conversation.title
            or texts.get(conversation.first_message_id)
            or gettext("Conversation %(number)d") % {"number": number}
        )
        conversation.url = (
            reverse("example:chat", args=[room.pk])
            if conversation.pk == room.conversation_id
            else reverse("example:conversation", args=[room.pk, conversation.pk])
        )
    return conversations


def room_titles(rooms: list[LLMChatRoom], user: Any) -> dict[int, str]:
    """Each room's title: its own, else one made of its settings (a title never changes on its
    own: it does not turn into somebody's first message)."""
    return {room.pk: room.title or room.get_generated_title() for room in rooms}


def first_message_texts(ids) -> dict[int, str]:
    """The first line of each message (by pk), shortened for a title; unreadable rows are left out."""
    texts = {}
    for pk, row in ConversationMessage.objects.in_bulk([pk for pk in ids if pk]).items():
        try:
            text = message_text(row.message).strip()
        except codec.CodecError:
            continue
        if text:
            texts[pk] = Truncator(text.splitlines()[0]).chars(TITLE_LENGTH)
    return texts


def _first_human_message(user: Any) -> QuerySet[ConversationMessage]:
    return ConversationMessage.objects.filter(user=user, visible=True, role=ConversationMessage.Role.HUMAN).order_by("pk")


def _room_messages(user: Any) -> QuerySet[ConversationMessage]:
    """``user``'s visible messages in the room of the outer query (in every conversation of it)."""
    return ConversationMessage.objects.filter(user=user, visible=True).filter(
        Q(conversation_id=OuterRef("conversation_id")) | Q(conversation__room_conversation__room_id=OuterRef("pk"))
    )


@login_required
def search(request: HttpRequest) -> HttpResponse:
    """The signed-in user's own messages that hold the words of ``?q=`` (``pyhub_ai.search``),
    each linking to its conversation's page, scrolled to the message."""
    query = request.GET.get("q", "").strip()[:200]
    hits = search_messages(request.user, query) if query else []
    for hit in hits:
        hit.url = conversation_url(hit.message.conversation, request.user) + f"#message-{hit.message.pk}"
    return render(request, "example/search.html", {"query": query, "hits": hits})


def conversation_url(conversation: Conversation, user: Any) -> str:
    """Where the demo shows ``conversation``: its room, the data room, or the ready-made page."""
    room = LLMChatRoom.objects.filter(Q(conversation=conversation) | Q(room_conversations__conversation=conversation)).first()
    if room is not None:
        return reverse("example:chat", args=[room.pk]) if room.conversation_id == conversation.pk else reverse(
            "example:conversation", args=[room.pk, conversation.pk]
        )
    if conversation.session_id == f"example-sales-{user.pk}":
        return reverse("example:data")
    return reverse("pyhub_ai:conversation_chat", args=[conversation.pk])


class RoomListView(LoginRequiredMixin, ListView):
    """Every room, the ones the user last talked in first, with the user's own message count
    and last activity (rooms are shared; the numbers are the user's threads only)."""

    template_name = "example/room_list.html"
    context_object_name = "rooms"
    paginate_by = 20

    def get_queryset(self) -> QuerySet[LLMChatRoom]:
        user_messages = _room_messages(self.request.user)
        return LLMChatRoom.objects.annotate(
            message_count=Coalesce(
                Subquery(user_messages.order_by().values("user").annotate(n=Count("pk")).values("n")[:1]),
                Value(0),
                output_field=IntegerField(),
            ),
            last_activity=Subquery(user_messages.order_by("-created_at").values("created_at")[:1]),
        ).order_by(F("last_activity").desc(nulls_last=True), "-pk")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        rooms = list(context["rooms"])
        titles = room_titles(rooms, self.request.user)
        for room in rooms:
            room.display_title = titles[room.pk]
            room.manageable = room.can_manage(self.request.user)
        context["rooms"] = rooms
        context["form"] = self.get_form()
        return context

    def get_form(self) -> LLMChatRoomForm:
        return LLMChatRoomForm(auto_id="new_room_%s")


class RoomFormMixin:
    """The room form, and the chat page as where it goes after saving."""

    model = LLMChatRoom
    form_class = LLMChatRoomForm
    template_name = "example/room_form.html"
    pk_url_kwarg = "room_pk"

    def get_success_url(self) -> str:
        return reverse("example:chat", args=[self.object.pk])


class ManageRoomMixin:
    """The room of the URL, if the signed-in user may manage it (else 403)."""

    model = LLMChatRoom
    pk_url_kwarg = "room_pk"

    def get_object(self, queryset=None) -> LLMChatRoom:
        room = super().get_object(queryset)
        if not room.can_manage(self.request.user):
            raise PermissionDenied(gettext("Only the room's creator can change it."))
        return room


class RoomCreateView(LoginRequiredMixin, RoomFormMixin, CreateView):
    def form_valid(self, form):
        form.instance.created_by = self.request.user
        response = super().form_valid(form)
        messages.success(self.request, _("The room was created."))
        return response


class RoomUpdateView(LoginRequiredMixin, ManageRoomMixin, RoomFormMixin, UpdateView):
    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, _("The room was saved."))
        return response


class RoomDeleteView(LoginRequiredMixin, ManageRoomMixin, DeleteView):
    """Asks for confirmation (GET), then deletes the room with every conversation in it (POST).

    Only when the user may delete all of it (``LLMChatRoom.can_delete``): while other people
    have conversations in the room, its creator is told so and nothing is deleted.
    """

    template_name = "example/room_confirm_delete.html"
    context_object_name = "room"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "can_delete": self.object.can_delete(self.request.user)}

    def form_valid(self, form):
        try:
            self.object.delete_as(self.request.user)
        except PermissionDenied as refusal:
            messages.error(self.request, str(refusal))
            return redirect("example:chat", room_pk=self.object.pk)
        messages.success(self.request, _("The room was deleted."))
        return redirect("example:room_list")
