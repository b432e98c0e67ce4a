"""The admin shows a LangGraph thread's checkpoints, linked to its conversation, read-only."""
from __future__ import annotations

import pytest
from django.urls import reverse
from langchain_core.messages import HumanMessage

from pyhub_ai.checkpoint import DjangoSaver
from pyhub_ai.models import Checkpoint, GraphThread
from tests.test_checkpoint_storage import config_of, echo_graph

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def thread():
    echo_graph(DjangoSaver()).invoke({"messages": [HumanMessage(content="hello")]}, config_of("admin-room"))
    return GraphThread.objects.get(thread_id="admin-room")


def test_a_thread_links_to_its_conversation_and_lists_its_checkpoints(admin_client, thread):
    page = admin_client.get(reverse("admin:pyhub_ai_graphthread_change", args=[thread.pk])).content.decode()

    assert reverse("admin:pyhub_ai_conversation_change", args=[thread.conversation_id]) in page
    for checkpoint_id in Checkpoint.objects.filter(thread=thread).values_list("checkpoint_id", flat=True):
        assert checkpoint_id in page


def test_a_checkpoint_shows_its_messages_as_conversation_rows(admin_client, thread):
    latest = Checkpoint.objects.filter(thread=thread).order_by("-checkpoint_id").first()
    rows = list(thread.conversation.messages.order_by("pk").values_list("pk", flat=True))

    page = admin_client.get(reverse("admin:pyhub_ai_checkpoint_change", args=[latest.pk])).content.decode()

    assert f"messages: 2 messages (conversation rows #{rows[0]}-#{rows[-1]})" in page


def test_checkpoints_cannot_be_added_or_edited_in_the_admin(admin_client, thread):
    latest = Checkpoint.objects.filter(thread=thread).first()

    assert admin_client.get(reverse("admin:pyhub_ai_checkpoint_add")).status_code == 403
    page = admin_client.get(reverse("admin:pyhub_ai_checkpoint_change", args=[latest.pk])).content.decode()
    assert 'name="_save"' not in page


def test_the_changelists_render(admin_client, thread):
    for name in ("graphthread", "checkpoint", "checkpointwrite"):
        assert admin_client.get(reverse(f"admin:pyhub_ai_{name}_changelist")).status_code == 200
