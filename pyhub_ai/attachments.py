"""Files attached to a user's message: images, text files (CSV, Markdown, plain text, JSON),
and PDF files when pypdf is installed (``pip install "pyhub_ai[pdf]"``: their text is read).

The upload view (``pyhub_ai.attachment_views.upload``) calls ``store_upload``; the
``user_message`` frame names the uploaded ids (``ChatMixin.start_turn``), and ``claim`` checks
they are the visitor's own, unused uploads of this conversation, then the human message records
them in ``additional_kwargs[KWARG]`` (ids, names, types): the files stay in Django's default
storage, never in the message row. ``for_model`` (called by ``LLMMixin.get_llm_prompt_messages``)
turns those references into LangChain multimodal content for the model: an image as a base64
``image_url`` block, a text file as a text block. ``message_attachments`` gives the page, the
admin and exports what to show.
"""
from __future__ import annotations

import base64
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext
from langchain_core.messages import BaseMessage, HumanMessage

from .conf import conf
from .llm import ATTACHMENTS_KWARG
from .models import Attachment

#: Where a human message lists its attachments (``[{"id", "name", "type"}]``).
KWARG = ATTACHMENTS_KWARG
#: Attachments one message may carry.
MAX_PER_MESSAGE = 4
#: Characters of a text file that go to the model.
MAX_TEXT_CHARS = 20_000

#: The accepted image types, by the bytes a file starts with (never by its name or the browser's word).
IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
#: The accepted text files, by extension (their bytes must be UTF-8).
TEXT_TYPES = {".txt": "text/plain", ".csv": "text/csv", ".md": "text/markdown", ".json": "application/json"}


class AttachmentRefused(ValueError):
    """An upload that is too large or of a type that is not accepted; the message says which."""


def sniff(upload: UploadedFile) -> str:
    """The content type of ``upload`` as its bytes show it (raises ``AttachmentRefused``)."""
    if upload.size > conf.ATTACHMENT_MAX_BYTES:
        raise AttachmentRefused(gettext("The file is too large (at most %(size)d MB).") % {"size": conf.ATTACHMENT_MAX_BYTES // 2**20 or 1})
    head = upload.read(16)
    upload.seek(0)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for signature, content_type in IMAGE_SIGNATURES.items():
        if head.startswith(signature):
            return content_type
    if head.startswith(b"%PDF-"):
        if not _reads_pdf():
            raise AttachmentRefused(gettext("PDF files cannot be read on this site."))
        return "application/pdf"
    extension = "." + upload.name.rsplit(".", 1)[-1].lower() if "." in upload.name else ""
    if extension in TEXT_TYPES:
        try:
            upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise AttachmentRefused(gettext("A text file must be UTF-8.")) from None
        finally:
            upload.seek(0)
        return TEXT_TYPES[extension]
    raise AttachmentRefused(gettext("Only images (PNG, JPEG, GIF, WebP), text files (TXT, CSV, MD, JSON) and PDF files can be attached."))


def _reads_pdf() -> bool:
    try:
        import pypdf  # noqa: F401
    except ImportError:
        return False
    return True


def store_upload(upload: UploadedFile, thread: dict[str, Any]) -> Attachment:
    """Check ``upload`` and store it for ``thread`` (conversation, user, visitor key)."""
    content_type = sniff(upload)
    name = (upload.name or "file").replace("/", "_").replace("\\", "_")[-200:]
    attachment = Attachment(name=name, content_type=content_type, size=upload.size, **thread)
    attachment.file.save(name, upload, save=False)
    attachment.save()
    return attachment


def claim(ids: list[int], thread: dict[str, Any]) -> list[Attachment]:
    """The attachments ``ids``, in order, if every one is an unused upload of ``thread``;
    raises ``LookupError`` otherwise (another visitor's upload is as unknown as a missing one)."""
    found = {a.pk: a for a in Attachment.objects.filter(pk__in=ids, message__isnull=True, **thread)}
    if len(found) != len(set(ids)):
        raise LookupError(ids)
    return [found[pk] for pk in ids]


def human_message(text: str, attachments: list[Attachment]) -> HumanMessage:
    """The user's message, naming its attachments (their files stay in storage)."""
    if not attachments:
        return HumanMessage(content=text)
    listed = [{"id": a.pk, "name": a.name, "type": a.content_type} for a in attachments]
    return HumanMessage(content=text, additional_kwargs={KWARG: listed})


def has_files(messages: list[BaseMessage]) -> bool:
    """Whether any of ``messages`` names attachments (``for_model`` then has files to read).
    Called for every turn's prompt: a loop, not ``any()`` of a generator (one Python call per
    message of the window less)."""
    for message in messages:
        if isinstance(message, HumanMessage) and message.additional_kwargs.get(KWARG):
            return True
    return False


def for_model(messages: list[BaseMessage]) -> list[BaseMessage]:
    """``messages`` with each attachment reference turned into content the model reads: the
    message's text, then each image (base64) or text file. Messages without attachments are
    passed as they are; an attachment whose file is gone is left out."""
    listed = [m for m in messages if isinstance(m, HumanMessage) and m.additional_kwargs.get(KWARG)]
    if not listed:
        return messages
    ids = [item["id"] for m in listed for item in m.additional_kwargs[KWARG]]
    stored = Attachment.objects.in_bulk(ids)
    with_files = {id(m) for m in listed}
    expanded = []
    for message in messages:
        if id(message) not in with_files:
            expanded.append(message)
            continue
        blocks: list[Any] = [{"type": "text", "text": message.text}] if message.text else []
        for item in message.additional_kwargs[KWARG]:
            attachment = stored.get(item["id"])
            if attachment is not None:
                blocks.append(_block(attachment))
        expanded.append(message.model_copy(update={"content": blocks}))
    return expanded


def _block(attachment: Attachment) -> dict[str, Any]:
    with attachment.file.open("rb") as file:
        data = file.read()
    if attachment.is_image:
        url = f"data:{attachment.content_type};base64,{base64.b64encode(data).decode('ascii')}"
        return {"type": "image_url", "image_url": {"url": url}}
    text = _pdf_text(data) if attachment.content_type == "application/pdf" else data.decode("utf-8", errors="replace")
    return {"type": "text", "text": f"[{attachment.name}]\n{text[:MAX_TEXT_CHARS]}"}


def _pdf_text(data: bytes) -> str:
    """The text of a PDF's pages (pypdf); a PDF that cannot be read says so to the model."""
    import io

    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        text, pages = [], iter(reader.pages)
        while sum(map(len, text)) < MAX_TEXT_CHARS and (page := next(pages, None)) is not None:
            text.append(page.extract_text() or "")
        return "\n".join(text)
    except Exception:  # pypdf raises many kinds of errors for broken files
        return gettext("(The text of this PDF file could not be read.)")


def message_attachments(message: BaseMessage) -> list[dict[str, Any]]:
    """What a page shows of a message's attachments: ``{id, name, type, url}`` each (``url``:
    the owner-only download of ``pyhub_ai.attachment_views``, when its URLs are installed)."""
    listed = message.additional_kwargs.get(KWARG) if isinstance(message, HumanMessage) else None
    if not isinstance(listed, list):
        return []
    shown = []
    for item in listed:
        try:
            url = reverse("pyhub_ai:attachment", args=[item["id"]])
        except NoReverseMatch:
            url = ""
        shown.append({"id": item["id"], "name": str(item.get("name", "")), "type": str(item.get("type", "")), "url": url})
    return shown


def delete_file(sender: type, instance: Attachment, **kwargs: Any) -> None:
    """``post_delete`` of an attachment (its conversation deleted, pyhub_ai_prune, the admin):
    its file leaves the storage too. Connected by ``PyhubAiConfig.ready``."""
    if instance.file:
        instance.file.delete(save=False)
