"""What the usage ledger says, for people: per user and per day, as tables, a chart and CSV.

Read by the admin's usage page (``pyhub_ai.usage_admin.UsageRecordAdmin.report_view``) and by
the conversation list (``pyhub_ai.views.ConversationListView``: the user's own month). Reads
only; the ledger is written by ``pyhub_ai.history`` (see ``pyhub_ai.ledger``).
"""
from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.http import HttpResponse
from django.utils import timezone

from .ledger import day_of
from .usage_models import UsageRecord, UsageTotal

#: The chart's size, in SVG user units.
CHART_WIDTH, CHART_HEIGHT, CHART_MARGIN = 720, 180, 24


@dataclass
class UsageRow:
    """The usage of one user (``user_id`` ``None``: every anonymous visitor) on one day (or over the period)."""

    user_id: Any
    user: str
    day: date | None
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)
    unpriced_calls: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: UsageRow) -> None:
        """Add ``other``'s sums to this row's."""
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cost += other.cost
        self.unpriced_calls += other.unpriced_calls


def period(days: int, today: date | None = None) -> tuple[date, date]:
    """The first and last day of the ``days`` days ending today (in ``TIME_ZONE``)."""
    today = today or day_of(timezone.now())
    return today - timedelta(days=days - 1), today


def _aware(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_default_timezone())


def usage_rows(first: date, last: date, user_id: Any = None, by_day: bool = True) -> list[UsageRow]:
    """Ledger sums per user (and per day, with ``by_day``) from ``first`` to ``last``, newest day
    and largest spender first; only ``user_id``'s with one given."""
    records = UsageRecord.objects.filter(created_at__gte=_aware(first), created_at__lt=_aware(last + timedelta(days=1)))
    if user_id is not None:
        records = records.filter(user_id=user_id)
    groups = ["user_id", "day"] if by_day else ["user_id"]
    if by_day:
        records = records.annotate(day=TruncDate("created_at", tzinfo=timezone.get_default_timezone()))
    sums = records.values(*groups).annotate(
        calls=Count("pk"),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        cached_tokens=Sum("cached_tokens"),
        cost=Sum("cost"),
        unpriced_calls=Count("pk", filter=Q(priced=False)),
    )
    names = _user_names({row["user_id"] for row in sums} - {None})
    rows = [
        UsageRow(
            user_id=row["user_id"],
            user=names.get(row["user_id"], "") if row["user_id"] is not None else "",
            day=row.get("day"),
            calls=row["calls"],
            input_tokens=row["input_tokens"] or 0,
            output_tokens=row["output_tokens"] or 0,
            cached_tokens=row["cached_tokens"] or 0,
            cost=row["cost"] or Decimal(0),
            unpriced_calls=row["unpriced_calls"],
        )
        for row in sums
    ]
    rows.sort(key=lambda row: (row.day or first, row.cost, row.tokens), reverse=True)
    return rows


def _user_names(user_ids: set[Any]) -> dict[Any, str]:
    User = get_user_model()
    return {user.pk: user.get_username() for user in User.objects.filter(pk__in=user_ids)}


def daily_totals(rows: Iterable[UsageRow], first: date, last: date) -> list[UsageRow]:
    """One row per day from ``first`` to ``last`` (days without calls included), summing ``rows``."""
    days = {first + timedelta(days=n): UsageRow(user_id=None, user="", day=first + timedelta(days=n)) for n in range((last - first).days + 1)}
    for row in rows:
        days[row.day].add(row)
    return list(days.values())


def per_user(rows: Iterable[UsageRow]) -> list[UsageRow]:
    """Each user's sums over the period (anonymous visitors together), largest spender first."""
    users: dict[Any, UsageRow] = {}
    for row in rows:
        users.setdefault(row.user_id, UsageRow(user_id=row.user_id, user=row.user, day=None)).add(row)
    return sorted(users.values(), key=lambda row: (row.cost, row.tokens), reverse=True)


def total(rows: Iterable[UsageRow]) -> UsageRow:
    """The sums of ``rows``."""
    result = UsageRow(user_id=None, user="", day=None)
    for row in rows:
        result.add(row)
    return result


def chart_bars(days: list[UsageRow], measure: str) -> dict[str, Any]:
    """The geometry of a bar chart of ``measure`` (``"tokens"`` or ``"cost"``) per day, for the
    SVG of ``admin/pyhub_ai/usage/report.html`` (drawn on the server: no script, no CDN)."""
    values = [float(getattr(day, measure)) for day in days]
    top = max(values, default=0) or 1
    slot = (CHART_WIDTH - 2 * CHART_MARGIN) / max(len(days), 1)
    plot_height = CHART_HEIGHT - 2 * CHART_MARGIN
    bars = []
    for index, (day, value) in enumerate(zip(days, values)):
        height = plot_height * value / top
        bars.append({
            "x": round(CHART_MARGIN + index * slot + slot * 0.1, 1),
            "y": round(CHART_HEIGHT - CHART_MARGIN - height, 1),
            "width": round(slot * 0.8, 1),
            "height": round(height, 1),
            "day": day.day,
            "value": getattr(day, measure),
        })
    return {
        "width": CHART_WIDTH, "height": CHART_HEIGHT, "bars": bars, "top": max((getattr(day, measure) for day in days), default=0),
        "baseline": CHART_HEIGHT - CHART_MARGIN, "margin": CHART_MARGIN, "right": CHART_WIDTH - CHART_MARGIN,
        "first": days[0].day if days else None, "last": days[-1].day if days else None,
    }  # fmt: skip


CSV_HEADER = ["day", "user_id", "user", "calls", "input_tokens", "output_tokens", "cached_input_tokens", "cost", "unpriced_calls"]


def csv_response(rows: Iterable[UsageRow], filename: str) -> HttpResponse:
    """Per user and per day, as CSV (anonymous visitors together, with an empty user)."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(CSV_HEADER)
    for row in rows:
        writer.writerow([
            row.day.isoformat() if row.day else "", row.user_id or "", _csv_safe(row.user), row.calls, row.input_tokens,
            row.output_tokens, row.cached_tokens, f"{row.cost:f}", row.unpriced_calls,
        ])  # fmt: skip
    return response


def _csv_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (a user name may start with ``=``)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@dataclass(frozen=True)
class MonthUsage:
    """A user's tokens and cost this month (``month``: its first day)."""

    month: date
    tokens: int
    cost: Decimal


def month_usage(user_id: Any) -> MonthUsage:
    """The user's usage this month (in ``TIME_ZONE``), from the ledger's daily totals: one query."""
    month = day_of(timezone.now()).replace(day=1)
    sums = UsageTotal.objects.filter(subject=f"user:{user_id}", day__gte=month).aggregate(tokens=Sum("tokens"), cost=Sum("cost"))
    return MonthUsage(month=month, tokens=sums["tokens"] or 0, cost=sums["cost"] or Decimal(0))
