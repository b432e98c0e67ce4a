"""pyhub_ai_import --upgrade-legacy-rows: django-pyhub-ai rows rewritten in the current form."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from langchain_core.messages import AIMessage, HumanMessage

from pyhub_ai import codec
from pyhub_ai.models import Conversation, ConversationMessage
from pyhub_ai.tokens import count_tokens

# The two payloads django-pyhub-ai's tutorial shows it INSERTing (seed 004), verbatim.
LEGACY_HUMAN = (
    '{"_type": "HumanMessage", "_value": {"content": "hello", "additional_kwargs": {}, "response_metadata": {}, '
    '"type": "human", "name": null, "id": null, "example": false}}'
)
LEGACY_AI = (
    r'{"_type": "AIMessage", "_value": {"content": "\u4f60\u597d\uff0c\u8bf7\u95ee\u6211\u53ef\u4ee5\u5e2e\u4f60'
    r'\u70b9\u4ec0\u4e48\u5496\u5561\u5417\uff1f", "additional_kwargs": {}, "response_metadata": {}, "type": "ai", '
    r'"name": null, "id": "run-7c97e77c-847b-4ec9-a874-03317f4f7712", "example": false, "tool_calls": [], '
    r'"invalid_tool_calls": [], "usage_metadata": {"input_tokens": 139, "output_tokens": 14, "total_tokens": 153, '
    r'"input_token_details": {"audio": 0, "cache_read": 0}, "output_token_details": {"audio": 0, "reasoning": 0}}}}'
)
CORRUPT = {"_type": "DataFrame", "_value": {"columns": ["a"]}}


@pytest.fixture
def legacy_rows(user_a):
    """Rows as django-pyhub-ai left them: legacy payloads, no role or token count worth keeping."""
    conversation = Conversation.objects.create(user=user_a)
    payloads = [json.loads(LEGACY_HUMAN), CORRUPT, json.loads(LEGACY_AI)]
    return ConversationMessage.objects.bulk_create(
        [ConversationMessage(conversation=conversation, user=user_a, role="human", content=p) for p in payloads]
    )


def upgrade(**options):
    out, err = StringIO(), StringIO()
    call_command("pyhub_ai_import", upgrade_legacy_rows=True, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def contents():
    return list(ConversationMessage.objects.order_by("pk").values_list("content", flat=True))


@pytest.mark.django_db
def test_legacy_rows_are_rewritten_in_the_current_form(legacy_rows):
    upgrade()

    human, _, ai = contents()
    assert human == codec.encode(HumanMessage("hello"))
    assert ai["v"] == 1 and ai["type"] == "ai" and "_type" not in ai


@pytest.mark.django_db
def test_upgraded_rows_decode_to_the_same_messages(legacy_rows):
    before = [codec.decode(json.loads(LEGACY_HUMAN)), codec.decode(json.loads(LEGACY_AI))]

    upgrade()

    human, _, ai = ConversationMessage.objects.order_by("pk")
    assert [human.message, ai.message] == before
    assert isinstance(ai.message, AIMessage) and ai.message.content == "你好，请问我可以帮你点什么咖啡吗？"
    assert ai.message.usage_metadata["total_tokens"] == 153


@pytest.mark.django_db
def test_upgrade_sets_role_and_token_count(legacy_rows):
    upgrade()

    human, _, ai = ConversationMessage.objects.order_by("pk")
    assert (human.role, ai.role) == ("human", "ai")
    assert (human.token_count, ai.token_count) == (count_tokens(human.message), count_tokens(ai.message))


@pytest.mark.django_db
def test_a_row_that_cannot_be_decoded_is_left_untouched_and_reported(legacy_rows):
    output, errors = upgrade()

    assert contents()[1] == CORRUPT
    assert "Upgraded 2 django-pyhub-ai messages." in output
    assert f"Left 1 messages that cannot be decoded untouched: pk {legacy_rows[1].pk}." in errors


@pytest.mark.django_db
def test_a_second_run_changes_nothing(legacy_rows):
    upgrade()
    after_first = list(ConversationMessage.objects.order_by("pk").values("content", "role", "token_count"))

    output, _ = upgrade()

    assert list(ConversationMessage.objects.order_by("pk").values("content", "role", "token_count")) == after_first
    assert "Upgraded 0 django-pyhub-ai messages." in output


@pytest.mark.django_db
def test_rows_in_the_current_form_are_not_touched(user_a):
    conversation = Conversation.objects.create(user=user_a)
    row = ConversationMessage.from_message(AIMessage("current"), conversation=conversation)
    row.token_count = 999
    row.save()

    output, _ = upgrade()

    assert ConversationMessage.objects.get().token_count == 999
    assert "Upgraded 0" in output


@pytest.mark.django_db
def test_upgrade_works_in_batches_past_an_unreadable_row(legacy_rows):
    output, errors = upgrade(batch_size=1)

    assert [content.get("v") for content in contents()] == [1, None, 1]
    assert "Upgraded 2" in output and str(legacy_rows[1].pk) in errors
