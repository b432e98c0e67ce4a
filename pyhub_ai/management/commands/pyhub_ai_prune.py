"""``manage.py pyhub_ai_prune``: delete expired (and, optionally, long-idle) conversations, and,
with ``--usage-older-than``, old rows of the usage ledger.

Deletes in batches of primary keys, each its own short transaction, so pruning a huge table
never holds locks for long. Messages go with their conversations; the ledger keeps what deleted
conversations spent until ``--usage-older-than`` removes it (the current month's daily totals,
which budgets count, are always kept).
"""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q, QuerySet
from django.utils import timezone

from pyhub_ai.ledger import day_of
from pyhub_ai.models import Conversation, ConversationMessage, UsageRecord, UsageTotal

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str, option: str = "--older-than") -> timedelta:
    """``30d`` -> 30 days; the units are s, m, h, d and w."""
    match = re.fullmatch(r"(\d+)([smhdw])", value.strip())
    if not match or int(match[1]) == 0:
        raise CommandError(
            f"{option} expects a positive whole number and a unit (s, m, h, d or w), like 30d or 12h; got {value!r}."
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


class Command(BaseCommand):
    help = (
        "Delete conversations whose expires_at has passed and, with --older-than, those not "
        "updated for that long. Their messages are deleted with them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            metavar="AGE",
            help="Also delete conversations last updated longer ago than AGE: a number and a unit "
            "(s, m, h, d or w), like 30d.",
        )
        parser.add_argument(
            "--usage-older-than",
            metavar="AGE",
            help="Also delete usage-ledger rows older than AGE (like 400d), and the daily usage totals "
            "of days before it, except the current month's (budgets count it).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only report what would be deleted.")
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Conversations deleted per transaction (default 500)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        older_than = parse_duration(options["older_than"]) if options["older_than"] else None
        usage_age = options.get("usage_older_than")
        usage = self.get_usage_querysets(parse_duration(usage_age, "--usage-older-than")) if usage_age else None
        conversations = self.get_queryset(older_than)
        if options["dry_run"]:
            messages = ConversationMessage.objects.filter(conversation__in=conversations.values("pk")).count()
            self.stdout.write(f"Would delete {conversations.count()} conversations and {messages} messages.")
            if usage is not None:
                self.stdout.write(f"Would delete {usage[0].count()} usage records and {usage[1].count()} daily usage totals.")
            return
        batch_size = max(options["batch_size"], 1)
        deleted, messages, batches = self.perform_delete(conversations, batch_size)
        self.stdout.write(f"Deleted {deleted} conversations and {messages} messages in {batches} batches.")
        if usage is not None:
            records, totals = (self.delete_in_batches(queryset, batch_size) for queryset in usage)
            self.stdout.write(f"Deleted {records} usage records and {totals} daily usage totals.")

    def get_queryset(self, older_than: timedelta | None) -> QuerySet[Conversation]:
        """The conversations to prune, judged against one ``now``."""
        now = timezone.now()
        condition = Q(expires_at__lte=now)
        if older_than is not None:
            condition |= Q(updated_at__lt=now - older_than)
        return Conversation.objects.filter(condition).order_by("pk")

    def perform_delete(self, conversations: QuerySet[Conversation], batch_size: int) -> tuple[int, int, int]:
        """Delete in batches of pks; returns (conversations, messages, batches)."""
        deleted = messages = batches = 0
        last_pk = None
        while True:
            batch = conversations if last_pk is None else conversations.filter(pk__gt=last_pk)
            pks = list(batch.values_list("pk", flat=True)[:batch_size])
            if not pks:
                return deleted, messages, batches
            last_pk = pks[-1]
            # Filtered again: a conversation active since the pks were read is spared.
            _, per_model = conversations.filter(pk__in=pks).delete()
            deleted += per_model.get(Conversation._meta.label, 0)
            messages += per_model.get(ConversationMessage._meta.label, 0)
            batches += 1

    def get_usage_querysets(self, age: timedelta) -> tuple[QuerySet[UsageRecord], QuerySet[UsageTotal]]:
        """The ledger rows older than ``age``, and the daily totals of the days before it that are
        not in the current month (in ``TIME_ZONE``)."""
        before = timezone.now() - age
        month = day_of(timezone.now()).replace(day=1)
        records = UsageRecord.objects.filter(created_at__lt=before).order_by("pk")
        totals = UsageTotal.objects.filter(day__lt=min(day_of(before), month)).order_by("pk")
        return records, totals

    def delete_in_batches(self, queryset: QuerySet, batch_size: int) -> int:
        """Delete ``queryset``'s rows, ``batch_size`` primary keys per transaction; how many."""
        deleted = 0
        while pks := list(queryset.values_list("pk", flat=True)[:batch_size]):
            deleted += queryset.model.objects.filter(pk__in=pks).delete()[0]
        return deleted
