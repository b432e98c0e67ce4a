"""Budgets: how much a visitor, and the whole site, may spend per day and per month.

``PYHUB_AI_BUDGETS`` sets the limits (README, "PYHUB_AI_BUDGETS")::

    PYHUB_AI_BUDGETS = {
        "user": {"day": {"tokens": 200_000}, "month": {"cost": 5}},   # each signed-in user
        "groups": {                                                  # instead of "user", for members
            "staff": {},                                             # (first listed group wins)
            "trial": {"day": {"tokens": 20_000}},
        },
        "anonymous": {"day": {"tokens": 20_000}},                    # each anonymous session
        "site": {"month": {"cost": 500}},                            # everybody together
    }

Periods are ``"day"`` and ``"month"`` in ``TIME_ZONE``; units are ``"tokens"`` (input + output)
and ``"cost"`` (in the currency of ``PYHUB_AI_MODEL_PRICES``). What was spent is read from the
ledger's daily totals (``UsageTotal``, written with each call's ledger row: ``pyhub_ai.ledger``).

``over_budget()`` is called by ``pyhub_ai.usage.admit_model_call`` before every model call (a
turn, a conversation starter, each agent step): a subject that has already spent its limit is
refused until the period ends. Concurrent turns of one budgeted visitor (tabs, workers) are run
one at a time by ``spending_lock()`` (``ChatMixin.run_turn`` holds it around the thread lock),
so each sees what the previous one spent: a visitor overspends by at most one turn. The site's
budget is not serialized (that would run the whole site one turn at a time): it overspends by
at most what the turns already running when it is reached spend.
"""
from __future__ import annotations

import calendar
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from . import locks
from .conf import conf
from .ledger import SITE, day_of, is_amount
from .usage_models import UsageTotal

if TYPE_CHECKING:
    from .usage import Visitor

PERIODS = ("month", "day")  # the month first: when both are spent, the later reset is the one to tell
UNITS = ("tokens", "cost")
#: The keys of ``PYHUB_AI_BUDGETS`` that limit one visitor, and the whole site.
VISITOR_KEYS = ("user", "groups", "anonymous")
SITE_KEY = "site"


@dataclass(frozen=True)
class OverBudget:
    """Why a model call may not start: whose budget (``"visitor"`` or ``"site"``), which
    ``period`` of it is spent, and when that period ends (``resets_at``, aware)."""

    limit: str
    period: str
    resets_at: datetime


def budget_problems(budgets: Any) -> list[str]:
    """What is wrong with a ``PYHUB_AI_BUDGETS`` value (empty: nothing), for ``pyhub_ai.E012``."""
    if not isinstance(budgets, dict):
        return [f"it must be a dict, not {type(budgets).__name__}"]
    problems = [f"unknown key {key!r} (use {', '.join(map(repr, (*VISITOR_KEYS, SITE_KEY)))})" for key in budgets if key not in (*VISITOR_KEYS, SITE_KEY)]
    entries = [(key, budgets[key]) for key in ("user", "anonymous", SITE_KEY) if key in budgets]
    groups = budgets.get("groups", {})
    if not isinstance(groups, dict):
        problems.append("'groups' must be a dict of group names to limits")
    else:
        entries += [(f"groups[{name!r}]", limits) for name, limits in groups.items()]
    for where, limits in entries:
        problems += [f"{where}: {problem}" for problem in _limit_problems(limits)]
    return problems


def cost_limits(budgets: dict[str, Any]) -> list[str]:
    """Where ``PYHUB_AI_BUDGETS`` limits cost (``"user"``, ``"groups['trial']"``, ...), for
    ``pyhub_ai.W006``: without prices every call costs 0, so these never refuse anything."""
    entries = [(key, budgets.get(key)) for key in ("user", "anonymous", SITE_KEY)]
    entries += [(f"groups[{name!r}]", limits) for name, limits in (budgets.get("groups") or {}).items()]
    return [
        where for where, limits in entries
        if isinstance(limits, dict) and any(isinstance(amounts, dict) and "cost" in amounts for amounts in limits.values())
    ]  # fmt: skip


def _limit_problems(limits: Any) -> list[str]:
    if limits is None:
        return []
    if not isinstance(limits, dict):
        return ['limits must be a dict like {"day": {"tokens": 100000}}']
    problems = []
    for period, amounts in limits.items():
        if period not in PERIODS:
            problems.append(f"unknown period {period!r} (use 'day' or 'month')")
        elif not isinstance(amounts, dict):
            problems.append(f'{period} must be a dict like {{"tokens": 100000, "cost": 5}}')
        else:
            for unit, amount in amounts.items():
                if unit not in UNITS:
                    problems.append(f"{period}: unknown unit {unit!r} (use 'tokens' or 'cost')")
                elif not is_amount(amount):
                    problems.append(f"{period}: {unit} must be a number >= 0, not {amount!r}")
    return problems


def subject_of(visitor: Visitor) -> str:
    """The key a visitor's spending is totalled under: the user, else the anonymous session,
    else (no session cookie) the client's address."""
    if visitor.user_id is not None:
        return f"user:{visitor.user_id}"
    if visitor.session:
        return f"visitor:{visitor.session}"
    return f"address:{visitor.address or 'unknown'}"


def has_visitor_budget(visitor: Visitor) -> bool:
    """Whether a budget may limit this visitor (decided without the database: a member of a
    group without limits is still serialized by ``spending_lock``)."""
    budgets = conf.BUDGETS
    if visitor.user_id is None:
        return bool(budgets.get("anonymous"))
    return bool(budgets.get("user") or budgets.get("groups"))


def visitor_limits(visitor: Visitor) -> dict[str, dict[str, float]]:
    """The visitor's limits: the first group of ``"groups"`` the user is a member of, else
    ``"user"``; ``"anonymous"`` for a visitor who is not signed in. Synchronous (one query when
    groups have budgets)."""
    budgets = conf.BUDGETS
    if visitor.user_id is None:
        return budgets.get("anonymous") or {}
    groups = budgets.get("groups") or {}
    if groups:
        from django.contrib.auth.models import Group

        member_of = set(Group.objects.filter(user=visitor.user_id, name__in=list(groups)).values_list("name", flat=True))
        for name, limits in groups.items():
            if name in member_of:
                return limits or {}
    return budgets.get("user") or {}


def spent(subjects: list[str], today: date) -> dict[str, dict[str, dict[str, Any]]]:
    """``{subject: {period: {unit: amount}}}`` this month and today, from the daily totals."""
    totals = {subject: {period: {"tokens": 0, "cost": Decimal(0)} for period in PERIODS} for subject in subjects}
    rows = UsageTotal.objects.filter(subject__in=subjects, day__gte=today.replace(day=1)).values_list("subject", "day", "tokens", "cost")
    for subject, day, tokens, cost in rows:
        for period in PERIODS if day == today else ("month",):
            totals[subject][period]["tokens"] += tokens
            totals[subject][period]["cost"] += cost
    return totals


def over_budget(visitor: Visitor, now: datetime | None = None) -> OverBudget | None:
    """Whether ``visitor`` (or the site) has spent a limit of ``PYHUB_AI_BUDGETS`` in the
    current day or month; ``None`` lets the call start. Synchronous: one query of the daily
    totals when a budget applies (one more for the user's groups), none otherwise."""
    budgets = conf.BUDGETS
    if not budgets:
        return None
    limits = {"visitor": visitor_limits(visitor), "site": budgets.get(SITE_KEY) or {}}
    subjects = {"visitor": subject_of(visitor), "site": SITE}
    applying = [name for name in ("visitor", "site") if limits[name]]
    if not applying:
        return None
    now = now or timezone.now()
    today = day_of(now)
    totals = spent([subjects[name] for name in applying], today)
    for name in applying:
        for period in PERIODS:
            for unit in UNITS:
                limit = limits[name].get(period, {}).get(unit)
                if limit is not None and totals[subjects[name]][period][unit] >= Decimal(str(limit)):
                    return OverBudget(name, period, period_end(today, period))
    return None


def period_end(today: date, period: str) -> datetime:
    """When the ``period`` that contains ``today`` ends: the next midnight, or the first of next
    month, in ``TIME_ZONE``."""
    if period == "day":
        end = today + timedelta(days=1)
    else:
        end = today.replace(day=calendar.monthrange(today.year, today.month)[1]) + timedelta(days=1)
    return timezone.make_aware(datetime.combine(end, time.min), timezone.get_default_timezone())


@contextlib.asynccontextmanager
async def spending_lock(visitor: Visitor) -> AsyncIterator[None]:
    """Hold while a turn of ``visitor`` may spend: a budgeted visitor's turns (every tab, every
    worker) run one at a time, so each is admitted knowing what the previous one spent. Taken
    before the thread lock (``locks.thread_lock`` on ``"budget:<subject>"``; ``ThreadBusy`` after
    ``PYHUB_AI_TURN_LOCK_WAIT`` seconds). Visitors no budget limits take no lock."""
    if not has_visitor_budget(visitor):
        yield
        return
    async with locks.thread_lock(f"budget:{subject_of(visitor)}", wait=conf.TURN_LOCK_WAIT):
        yield
