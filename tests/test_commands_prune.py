"""pyhub_ai_prune: expired and long-idle conversations are deleted with their messages."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from langchain_core.messages import AIMessage, HumanMessage

from pyhub_ai.models import Conversation, ConversationMessage


def conversation(title, *, expires_in=None, idle=None, messages=2):
    """A conversation expiring in ``expires_in`` (negative: expired), last updated ``idle`` ago."""
    now = timezone.now()
    chat = Conversation.objects.create(title=title, expires_at=now + expires_in if expires_in is not None else None)
    ConversationMessage.objects.bulk_create(
        [ConversationMessage.from_message(HumanMessage(f"{title} {n}") if n % 2 == 0 else AIMessage("ok"), conversation=chat)
         for n in range(messages)]
    )
    if idle is not None:
        Conversation.objects.filter(pk=chat.pk).update(updated_at=now - idle)
    return chat


def prune(**options):
    out = StringIO()
    call_command("pyhub_ai_prune", stdout=out, **options)
    return out.getvalue()


def titles():
    return sorted(Conversation.objects.values_list("title", flat=True))


@pytest.mark.django_db
def test_expired_conversations_are_deleted_and_others_kept():
    conversation("expired", expires_in=-timedelta(minutes=1))
    conversation("expires later", expires_in=timedelta(days=1))
    conversation("never expires", idle=timedelta(days=400))

    output = prune()

    assert titles() == ["expires later", "never expires"]
    assert "Deleted 1 conversations and 2 messages in 1 batches." in output


@pytest.mark.django_db
def test_messages_are_deleted_with_their_conversations():
    expired = conversation("expired", expires_in=-timedelta(seconds=1), messages=3)
    kept = conversation("kept", messages=2)

    prune()

    assert not ConversationMessage.objects.filter(conversation_id=expired.pk).exists()
    assert ConversationMessage.objects.filter(conversation=kept).count() == 2


@pytest.mark.django_db
def test_older_than_also_deletes_conversations_idle_that_long():
    conversation("idle 31 days", idle=timedelta(days=31))
    conversation("idle 29 days", idle=timedelta(days=29))
    conversation("expired", expires_in=-timedelta(hours=1))

    output = prune(older_than="30d")

    assert titles() == ["idle 29 days"]
    assert "Deleted 2 conversations and 4 messages" in output


@pytest.mark.parametrize(("age", "idle_hours", "deleted"), [("2w", 24 * 15, True), ("90m", 2, True), ("3h", 2, False)])
@pytest.mark.django_db
def test_older_than_understands_its_units(age, idle_hours, deleted):
    conversation("idle", idle=timedelta(hours=idle_hours))

    prune(older_than=age)

    assert titles() == ([] if deleted else ["idle"])


@pytest.mark.django_db
def test_dry_run_reports_and_deletes_nothing():
    conversation("expired", expires_in=-timedelta(minutes=1), messages=3)
    conversation("idle", idle=timedelta(days=60))

    output = prune(older_than="30d", dry_run=True)

    assert "Would delete 2 conversations and 5 messages." in output
    assert titles() == ["expired", "idle"]
    assert ConversationMessage.objects.count() == 5


@pytest.mark.parametrize("age", ["30", "30x", "d", "-3d", "0d", "1.5h", "30 days"])
def test_a_bad_duration_is_an_error(age):
    with pytest.raises(CommandError, match="a unit \\(s, m, h, d or w\\), like 30d"):
        call_command("pyhub_ai_prune", f"--older-than={age}", stdout=StringIO())


@pytest.mark.django_db
def test_deletes_in_batches():
    for n in range(5):
        conversation(f"expired {n}", expires_in=-timedelta(minutes=1))
    conversation("kept", expires_in=timedelta(minutes=1))

    with CaptureQueriesContext(connection) as queries:
        output = prune(batch_size=2)

    conversation_deletes = [q for q in queries if q["sql"].startswith("DELETE") and "pyhub_ai_conversation\"" in q["sql"]]
    assert len(conversation_deletes) == 3
    assert titles() == ["kept"]
    assert "Deleted 5 conversations and 10 messages in 3 batches." in output


@pytest.mark.django_db
def test_nothing_to_prune():
    conversation("kept")

    assert "Deleted 0 conversations and 0 messages in 0 batches." in prune()


def test_an_expired_branched_conversation_goes_with_every_branch_and_its_branch_choice(user_a):
    from pyhub_ai.history import DjangoChatMessageHistory
    from pyhub_ai.models import ThreadBranch

    expired = conversation("branched", expires_in=timedelta(seconds=-1), messages=0)
    kept = conversation("kept", messages=2)
    history = DjangoChatMessageHistory(conversation=expired, user=user_a)
    history.add_messages([HumanMessage("question"), AIMessage("first answer")])
    first = expired.messages.get(role="ai")
    history.finish_turn(history.start_turn(None, regenerate=first.pk), AIMessage("second answer"))
    history.switch_branch(first.pk)

    output = prune()

    assert "Deleted 1 conversations and 3 messages" in output
    assert titles() == ["kept"] and kept.messages.count() == 2
    assert not ThreadBranch.objects.exists() and not ConversationMessage.objects.filter(conversation_id=expired.pk).exists()


def test_usage_older_than_deletes_old_ledger_rows_and_totals_but_not_this_months(user_a):
    from pyhub_ai.ledger import day_of
    from pyhub_ai.models import UsageRecord, UsageTotal

    now = timezone.now()
    for days in (0, 10, 400, 500):
        UsageRecord.objects.create(created_at=now - timedelta(days=days, seconds=5), user=user_a, model="openai:gpt-4o", input_tokens=days)
    today = day_of(now)
    for day in (today, today.replace(day=1), today - timedelta(days=400)):
        UsageTotal.objects.create(subject=f"user:{user_a.pk}", day=day, tokens=1)

    assert "Would delete 2 usage records and 1 daily usage totals." in prune(dry_run=True, usage_older_than="300d")
    assert UsageRecord.objects.count() == 4
    assert "Deleted 2 usage records and 1 daily usage totals." in prune(usage_older_than="300d", batch_size=1)
    assert sorted(UsageRecord.objects.values_list("input_tokens", flat=True)) == [0, 10]
    assert sorted(UsageTotal.objects.values_list("day", flat=True)) == sorted({today, today.replace(day=1)})

    # A short age never takes this month's totals: budgets count them.
    prune(usage_older_than="1s")
    assert UsageRecord.objects.count() == 0
    assert sorted(UsageTotal.objects.values_list("day", flat=True)) == sorted({today, today.replace(day=1)})
