"""The seed-004 chat view, plus the room list a demo needs around it."""
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max, Q
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from example.models import LLMChatRoom


@login_required
def language_tutor_chat(request, room_pk: int):
    llm_chat_room, __ = LLMChatRoom.objects.get_or_create(pk=room_pk)
    conversation_pk = llm_chat_room.conversation.pk
    ws_url = f"/ws/example/chat/{conversation_pk}/"
    return render(request, "pyhub_ai/chat_room_ws.html", {
        "ws_url": ws_url,
    })


@login_required
def room_list(request):
    """Every room, newest first, with the signed-in user's own message count and last activity.

    Rooms are owner-less (seed 004), so each user has a private thread in each room: the counts
    shown are the user's thread only.
    """
    rooms = (
        LLMChatRoom.objects.select_related("conversation")
        .annotate(
            message_count=Count(
                "conversation__messages",
                filter=_own_visible_messages(request.user),
            ),
            last_activity=Max(
                "conversation__messages__created_at",
                filter=_own_visible_messages(request.user),
            ),
        )
        .order_by("-pk")
    )
    return render(request, "example/room_list.html", {"rooms": rooms})


@login_required
@require_POST
def room_new(request):
    room = LLMChatRoom.objects.create()
    return redirect("example:chat", room_pk=room.pk)


def _own_visible_messages(user) -> Q:
    return Q(conversation__messages__user=user, conversation__messages__visible=True)
