"""May this visitor cause a model call now? The one place that decides it.

Every model call a visitor can cause passes ``admit_model_call()`` before the model is called:

- a chat turn and a conversation starter (``ChatMixin.run_turn``, in the transaction that takes
  the thread's lock, before anything is stored: a refused turn stores nothing);
- every further step of a tool-calling turn (``AgentMixin.produce_reply``: the turn's first
  step was counted when it started);
- resuming a graph's turn after the user's approval (``GraphMixin.run_approval``, in the
  transaction that takes the thread's lock: the model step after the approved tools).

Each call is counted, in fixed windows in the cache ``PYHUB_AI_RATE_LIMIT_CACHE``
(``pyhub_ai.ratelimit``), against:

- ``PYHUB_AI_RATE_LIMIT`` for each of the visitor's identities (``Visitor.meters()``): a
  signed-in user's account; for an anonymous visitor, their session and their client address,
  both (a visitor who drops the session cookie is still counted by address);
- ``PYHUB_AI_GLOBAL_RATE_LIMIT`` for the whole site, a ceiling on what every visitor together
  may spend.

Then the budgets of ``PYHUB_AI_BUDGETS`` (``pyhub_ai.budgets.over_budget``: tokens or cost per day
and month, for the visitor and for the site, from the usage ledger's totals).

A refusal raises ``UsageLimited`` (a ``rate_limited`` error frame) or ``QuotaExceeded`` (a
``quota_exceeded`` error frame that says when the budget resets).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone
from django.utils.formats import date_format, time_format
from django.utils.translation import gettext

from . import budgets, ratelimit
from .conf import conf

SITE = "site"
VISITOR = "visitor"


@dataclass(frozen=True)
class Visitor:
    """Whose model calls these are: a signed-in ``user_id``; else an anonymous visitor's
    ``session`` (the hash that keys their thread, empty without a session cookie) and their
    client ``address`` (empty when the server does not know it). ``timezone``: the visitor's
    IANA time zone, if known (refusals say when a budget resets in it)."""

    user_id: Any = None
    session: str = ""
    address: str = ""
    timezone: str = ""

    def meters(self) -> list[str]:
        """The counters ``PYHUB_AI_RATE_LIMIT`` applies to, each on its own.

        A signed-in user is counted by account only, so the users behind one address (a
        school, an office) do not share a limit; an anonymous visitor by session and address.
        """
        if self.user_id is not None:
            return [f"user:{self.user_id}"]
        meters = [f"session:{self.session}"] if self.session else []
        return [*meters, f"address:{self.address or 'unknown'}"]


class UsageLimited(Exception):
    """A model call refused by a limit: ``limit`` is ``VISITOR`` (``PYHUB_AI_RATE_LIMIT``) or
    ``SITE`` (``PYHUB_AI_GLOBAL_RATE_LIMIT``)."""

    code = "rate_limited"

    def __init__(self, limit: str) -> None:
        super().__init__(f"{limit} limit reached")
        self.limit = limit

    @property
    def client_message(self) -> str:
        if self.limit == SITE:
            return gettext("The assistant is answering too many people right now. Please try again in a few minutes.")
        return gettext("You are sending messages too fast. Please wait a moment.")


class QuotaExceeded(UsageLimited):
    """A model call refused by a budget of ``PYHUB_AI_BUDGETS`` (``limit``: ``VISITOR`` or
    ``SITE``) until ``resets_at``; the message says when, in the visitor's time zone."""

    code = "quota_exceeded"

    def __init__(self, limit: str, resets_at: datetime, tz: str = "") -> None:
        super().__init__(limit)
        self.resets_at = resets_at
        self.tz = tz

    @property
    def client_message(self) -> str:
        if self.limit == SITE:
            reached = gettext("The assistant has used up this site's budget for now.")
        else:
            reached = gettext("You have used up your usage budget.")
        return f"{reached} {self.reset_sentence()}"

    def reset_sentence(self, now: datetime | None = None) -> str:
        """When the budget resets, as the visitor would say it: today at a time, tomorrow, or a date."""
        try:
            tz = ZoneInfo(self.tz) if self.tz else timezone.get_current_timezone()
        except (ValueError, LookupError):
            tz = timezone.get_current_timezone()
        resets = timezone.localtime(self.resets_at, tz)
        today = timezone.localtime(now or timezone.now(), tz).date()
        if resets.date() <= today:
            return gettext("It resets today at %(time)s.") % {"time": time_format(resets.time(), "H:i")}
        if resets.date() == today + timedelta(days=1):
            if resets.hour == resets.minute == 0:
                return gettext("It resets tomorrow.")
            return gettext("It resets tomorrow at %(time)s.") % {"time": time_format(resets.time(), "H:i")}
        return gettext("It resets on %(date)s.") % {"date": date_format(resets.date(), "DATE_FORMAT")}


def admit_model_call(visitor: Visitor) -> None:
    """Count one model call for ``visitor`` and for the site; raise ``UsageLimited`` when a rate
    limit is used up, ``QuotaExceeded`` when a budget of ``PYHUB_AI_BUDGETS`` is spent
    (``pyhub_ai.budgets.over_budget``: one query of the ledger's daily totals, only when a budget
    applies). Synchronous (the chat consumer calls it in the database call that starts a turn).

    The visitor's counters are checked first, so calls refused to one visitor never use up the
    site's ceiling for everybody else.
    """
    rate = conf.RATE_LIMIT
    if rate:
        for meter in visitor.meters():
            if not ratelimit.hit(meter, rate):
                raise UsageLimited(VISITOR)
    site_rate = conf.GLOBAL_RATE_LIMIT
    if site_rate and not ratelimit.hit(SITE, site_rate):
        raise UsageLimited(SITE)
    refusal = budgets.over_budget(visitor)
    if refusal is not None:
        raise QuotaExceeded(SITE if refusal.limit == "site" else VISITOR, refusal.resets_at, visitor.timezone)
