"""Uploading a file to attach to a message, and fetching it back: the owner only.

Routed by ``pyhub_ai.urls`` (``attachment_upload``, ``attachment``); the chat page's script
(chat.js) uploads with the page's CSRF token, then names the ids in its ``user_message`` frame.
Another user's conversation or attachment is a 404, exactly like one that does not exist.
"""
from __future__ import annotations

from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from . import attachments
from .models import Attachment, Conversation


@require_POST
def upload(request: HttpRequest, pk: int) -> JsonResponse:
    """Store the ``file`` of a multipart POST for the signed-in user's thread of conversation
    ``pk``; answers ``{id, name, type, url}``, or 400 with ``{error}`` (too large, wrong type)."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": gettext("Please sign in to attach files.")}, status=403)
    conversation = get_object_or_404(Conversation, Q(user=request.user) | Q(user__isnull=True), pk=pk)
    upload = request.FILES.get("file")
    if upload is None:
        return JsonResponse({"error": gettext("No file was sent.")}, status=400)
    try:
        stored = attachments.store_upload(upload, {"conversation": conversation, "user": request.user, "visitor_key": ""})
    except attachments.AttachmentRefused as refusal:
        return JsonResponse({"error": str(refusal)}, status=400)
    [shown] = attachments.message_attachments(attachments.human_message("", [stored]))
    return JsonResponse(shown, status=201)


@require_GET
def download(request: HttpRequest, pk: int) -> FileResponse:
    """The file of attachment ``pk``, to the user who uploaded it (images shown inline, text
    files downloaded; never sniffed or run by the browser)."""
    if not request.user.is_authenticated:
        raise Http404
    return serve_attachment(get_object_or_404(Attachment, pk=pk, user=request.user))


def serve_attachment(attachment: Attachment) -> FileResponse:
    """The response of an attachment's file (also the admin's, ``ConversationAdmin.attachment_view``)."""
    response = FileResponse(
        attachment.file.open("rb"), content_type=attachment.content_type, as_attachment=not attachment.is_image,
        filename=attachment.name,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response
