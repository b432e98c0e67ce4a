"""Files attached to a message (pyhub_ai.attachments): the upload and download views (CSRF, limits,
types, the owner only), the ``attachments`` of a ``user_message`` (docs/protocol.md, 1.3) and
what the model is sent."""
from __future__ import annotations

import base64

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from pyhub_ai.llm import OfflineChatModel
from pyhub_ai.models import Attachment, Conversation, ConversationMessage

from .conftest import fake_model
from .test_branches import open_thread, turn

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def upload(client, conversation, name="photo.png", data=PNG):
    return client.post(reverse("pyhub_ai:attachment_upload", args=[conversation.pk]), {"file": SimpleUploadedFile(name, data)})


# -- Upload and download ------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_image_is_stored_in_the_storage_under_a_new_name_and_only_its_owner_fetches_it(client, user_a, user_b):
    conversation = Conversation.objects.create(user=user_a)
    client.force_login(user_a)

    response = upload(client, conversation)

    assert response.status_code == 201
    shown = response.json()
    stored = Attachment.objects.get()
    assert (shown["name"], shown["type"], stored.size) == ("photo.png", "image/png", len(PNG))
    assert "photo" not in stored.file.name and stored.file.read() == PNG
    fetched = client.get(shown["url"])
    assert fetched.status_code == 200 and b"".join(fetched.streaming_content) == PNG
    assert fetched["X-Content-Type-Options"] == "nosniff"
    client.force_login(user_b)
    assert client.get(shown["url"]).status_code == 404


@pytest.mark.django_db
def test_an_upload_needs_the_csrf_token(user_a):
    conversation = Conversation.objects.create(user=user_a)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_a)

    assert upload(client, conversation).status_code == 403
    assert not Attachment.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name, data, error",
    [
        ("fake.png", b"MZ\x90\x00 not an image", "Only images"),
        ("notes.txt", "é".encode("latin-1") * 10, "UTF-8"),
        ("big.png", PNG + b"\0" * 2048, "too large"),
    ],
)
def test_a_file_of_another_type_or_too_large_is_refused(client, user_a, settings, name, data, error):
    settings.PYHUB_AI_ATTACHMENT_MAX_BYTES = 1024
    conversation = Conversation.objects.create(user=user_a)
    client.force_login(user_a)

    response = upload(client, conversation, name, data)

    assert response.status_code == 400 and error in response.json()["error"]
    assert not Attachment.objects.exists()


@pytest.mark.django_db
def test_nobody_uploads_into_another_users_conversation(client, user_a, user_b):
    conversation = Conversation.objects.create(user=user_b)
    client.force_login(user_a)

    assert upload(client, conversation).status_code == 404


# -- The user_message frame ---------------------------------------------------------------------------


def stored_attachment(conversation, user, name="photo.png", data=PNG, content_type="image/png"):
    attachment = Attachment(conversation=conversation, user=user, name=name, content_type=content_type, size=len(data))
    attachment.file.save(name, SimpleUploadedFile(name, data), save=False)
    attachment.save()
    return attachment


@pytest.mark.django_db(transaction=True)
async def test_a_message_with_an_image_and_a_text_file_sends_them_to_the_model_and_shows_them(user_a, use_model):
    model = use_model(fake_model("I see a pixel."))
    conversation = await Conversation.objects.acreate(user=user_a)
    image = await sync_to_async(stored_attachment)(conversation, user_a)
    notes = await sync_to_async(stored_attachment)(conversation, user_a, "notes.csv", b"city,units\nSeoul,3\n", "text/csv")
    tab = await open_thread(conversation, user_a)

    frames = await turn(tab, {"type": "user_message", "text": "What is this?", "attachments": [image.pk, notes.pk]})

    shown = next(f for f in frames if f["type"] == "message")["message"]
    assert [(a["id"], a["name"], a["type"]) for a in shown["attachments"]] == [
        (image.pk, "photo.png", "image/png"), (notes.pk, "notes.csv", "text/csv")
    ]
    sent = model.calls[0][-1].content
    assert sent[0] == {"type": "text", "text": "What is this?"}
    assert sent[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert sent[2] == {"type": "text", "text": "[notes.csv]\ncity,units\nSeoul,3\n"}
    stored = await ConversationMessage.objects.aget(pk=shown["id"])
    assert (await Attachment.objects.aget(pk=image.pk)).message_id == stored.pk
    assert "base64" not in str(stored.content)  # the rows hold references, never the files
    await tab.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_another_users_or_an_already_sent_attachment_is_refused_and_nothing_is_stored(user_a, user_b, use_model):
    use_model(fake_model("ok", "ok"))
    alices = await Conversation.objects.acreate(user=user_a)
    bobs = await Conversation.objects.acreate(user=user_b)
    theirs = await sync_to_async(stored_attachment)(bobs, user_b)
    mine = await sync_to_async(stored_attachment)(alices, user_a)
    tab = await open_thread(alices, user_a)
    await turn(tab, {"type": "user_message", "text": "first", "attachments": [mine.pk]})
    stored = await ConversationMessage.objects.acount()

    for ids in ([theirs.pk], [mine.pk], [999_999]):
        await tab.send_json_to({"type": "user_message", "text": "again", "attachments": ids})
        refusal = await tab.receive_json_from(timeout=3)
        assert (refusal["type"], refusal["code"], refusal["message"]) == ("error", "not_found", "This attachment does not exist.")
    assert await ConversationMessage.objects.acount() == stored
    await tab.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_offline_model_acknowledges_the_files(user_a, use_model):
    use_model(OfflineChatModel())
    conversation = await Conversation.objects.acreate(user=user_a)
    image = await sync_to_async(stored_attachment)(conversation, user_a)
    tab = await open_thread(conversation, user_a)

    reply = (await turn(tab, {"type": "user_message", "text": "", "attachments": [image.pk]}))[-1]["message"]

    assert reply["text"].startswith("I received your files: photo.png.")
    await tab.disconnect()


# -- The admin, exports and prune -----------------------------------------------------------------


@pytest.fixture
def sent_image(user_a):
    """A conversation of user_a whose message carries an image."""
    from pyhub_ai.attachments import human_message

    conversation = Conversation.objects.create(user=user_a, title="With a photo")
    image = stored_attachment(conversation, user_a)
    row = ConversationMessage.from_message(human_message("look", [image]), conversation=conversation, user=user_a)
    row.save()
    Attachment.objects.filter(pk=image.pk).update(message=row)
    return conversation, image


@pytest.mark.django_db
def test_the_admin_thread_shows_the_image_and_serves_it_to_staff(admin_client, sent_image):
    conversation, image = sent_image
    html = admin_client.get(reverse("admin:pyhub_ai_conversation_change", args=[conversation.pk])).content.decode()

    url = reverse("admin:pyhub_ai_conversation_attachment", args=[conversation.pk, image.pk])
    assert f'<img class="pyhub-admin-thumbnail" src="{url}" alt="photo.png"' in html
    assert b"".join(admin_client.get(url).streaming_content) == PNG


@pytest.mark.django_db
def test_the_markdown_export_shows_the_image(sent_image):
    from io import StringIO

    from django.core.management import call_command

    conversation, image = sent_image
    out = StringIO()
    call_command("pyhub_ai_export", "--format", "markdown", "--conversation", str(conversation.pk), stdout=out)

    assert f"- ![photo.png](/chat/attachments/{image.pk}/)" in out.getvalue()


@pytest.mark.django_db
def test_pruning_a_conversation_deletes_its_files_from_the_storage(sent_image):
    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from django.utils import timezone

    conversation, image = sent_image
    Conversation.objects.filter(pk=conversation.pk).update(expires_at=timezone.now())
    assert default_storage.exists(image.file.name)

    call_command("pyhub_ai_prune", stdout=None)

    assert not default_storage.exists(image.file.name) and not Attachment.objects.exists()


def pdf_with_text(text: str) -> bytes:
    """A one-page PDF that shows ``text`` (Helvetica), written out by hand."""
    stream = f"BT /F1 18 Tf 40 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.mark.django_db
def test_a_pdf_is_accepted_and_the_model_reads_its_text(client, user_a):
    from langchain_core.messages import HumanMessage

    from pyhub_ai.attachments import for_model, human_message

    conversation = Conversation.objects.create(user=user_a)
    client.force_login(user_a)
    response = upload(client, conversation, "menu.pdf", pdf_with_text("Latte 5000 won"))
    assert response.status_code == 201 and response.json()["type"] == "application/pdf"

    [sent] = for_model([human_message("What is on the menu?", [Attachment.objects.get()])])

    assert isinstance(sent, HumanMessage) and sent.content[1]["text"].startswith("[menu.pdf]\nLatte 5000 won")
