"""Usage for people: the admin's usage page (per user and per day, chart, CSV; staff only), the
read-only ledger in the admin, and the signed-in user's month on their conversation list."""
from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from langchain_core.messages import AIMessage

from pyhub_ai import statements
from pyhub_ai.ledger import SITE, ModelCall, day_of, record
from pyhub_ai.models import Conversation, ConversationMessage, UsageRecord

pytestmark = pytest.mark.django_db

PRICES = {"openai:gpt-4o": {"input": 2.5, "output": 10}}
REPORT = reverse("admin:pyhub_ai_usagerecord_report")


def spend(user, input_tokens: int, output_tokens: int, model: str = "openai:gpt-4o", days_ago: int = 0) -> UsageRecord:
    """Record one model call of ``user`` as a stored reply does (``pyhub_ai.history``)."""
    conversation = Conversation.objects.create(user=user)
    reply = ConversationMessage.from_message(AIMessage(content="ok"), conversation=conversation, user=user)
    reply.save()
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}
    now = timezone.now() - timedelta(days=days_ago)
    row = record(ModelCall(model, [], f"user:{user.pk}"), AIMessage(content="ok", usage_metadata=usage), reply, now)
    with transaction.atomic():
        statements.insert_usage(row, [f"user:{user.pk}", SITE], day_of(now))
    return row


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


@override_settings(PYHUB_AI_MODEL_PRICES=PRICES)
def test_the_usage_page_shows_tokens_and_cost_per_user_and_per_day(admin_client, user_a, user_b):
    spend(user_a, 1_000_000, 0)
    spend(user_a, 0, 100_000, days_ago=1)
    spend(user_b, 200, 100, model="openai:unknown")
    response = admin_client.get(REPORT)
    assert response.status_code == 200
    page = text(response)
    users = page.split("Per user")[1].split("Per user and day")[0]
    # alice: 2.5 (input) + 1.0 (output); bob's model is not priced.
    assert re.search(r"alice 2 1000000 100000 0 3\.5000", users)
    assert re.search(r"bob 1 200 100 0 0\.0000 \*", users)
    days = page.split("Per user and day")[1]
    assert days.count("alice") == 2 and days.count("bob") == 1
    assert "1 call used a model missing from PYHUB_AI_MODEL_PRICES" in page
    svg = response.content.decode().split('<svg id="pyhub-ai-usage-chart"')[1].split("</svg>")[0]
    assert svg.count('class="pyhub-ai-usage-bar"') == 30  # one per day of the period, empty days too


@override_settings(PYHUB_AI_MODEL_PRICES=PRICES)
def test_the_usage_page_exports_csv_per_user_and_day(admin_client, user_a):
    spend(user_a, 1_000_000, 0)
    response = admin_client.get(REPORT, {"format": "csv", "days": "7"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(row["user"], row["calls"], row["input_tokens"], Decimal(row["cost"])) for row in rows] == [("alice", "1", "1000000", Decimal("2.5"))]
    assert rows[0]["day"] == day_of(timezone.now()).isoformat()


def test_the_usage_page_for_one_user_shows_only_theirs(admin_client, user_a, user_b):
    spend(user_a, 10, 5)
    spend(user_b, 20, 5)
    page = text(admin_client.get(REPORT, {"user": str(user_b.pk)}))
    assert "User: bob" in page and "alice" not in page


def test_the_usage_page_is_for_staff_with_the_ledgers_view_permission(client, user_a, django_user_model):
    client.force_login(user_a)
    assert client.get(REPORT).status_code == 302  # not staff: the admin's sign-in page
    staff = django_user_model.objects.create_user(username="staff", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get(REPORT).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_usagerecord"))
    assert client.get(REPORT).status_code == 200


def test_the_ledger_is_read_only_in_the_admin(admin_client, user_a):
    row = spend(user_a, 10, 5)
    row = UsageRecord.objects.get()
    assert admin_client.get(reverse("admin:pyhub_ai_usagerecord_changelist")).status_code == 200
    change = admin_client.get(reverse("admin:pyhub_ai_usagerecord_change", args=[row.pk]))
    assert change.status_code == 200 and b'name="input_tokens"' not in change.content
    assert admin_client.post(reverse("admin:pyhub_ai_usagerecord_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    assert admin_client.get(reverse("admin:pyhub_ai_usagerecord_add")).status_code == 403
    assert UsageRecord.objects.count() == 1


@override_settings(PYHUB_AI_MODEL_PRICES=PRICES)
def test_the_conversation_list_shows_the_users_usage_this_month(client, user_a, user_b):
    spend(user_a, 1_000_000, 2_000)
    spend(user_b, 5, 5)  # someone else's
    client.force_login(user_a)
    page = text(client.get(reverse("pyhub_ai:conversation_list")))
    month = timezone.localdate().strftime("%B %Y")
    assert f"Your usage in {month}: 1,002,000 tokens, cost 2.52." in page


def test_without_prices_the_conversation_list_shows_tokens_only(client, user_a):
    spend(user_a, 10, 5)
    client.force_login(user_a)
    page = text(client.get(reverse("pyhub_ai:conversation_list")))
    assert re.search(r"Your usage in \w+ \d{4}: 15 tokens\.", page)
