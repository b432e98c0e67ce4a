"""May this visitor cause a model call now? The one place that decides it.

Every model call a visitor can cause passes ``admit_model_call()`` before the model is called:

- a chat turn and a conversation starter (``ChatMixin.run_turn``, in the transaction that takes
  the thread's lock, before anything is stored: a refused turn stores nothing);
- every further step of a tool-calling turn (``AgentMixin.produce_reply``: the turn's first
  step was counted when it started).

Each call is counted, in fixed windows in the cache ``PYHUB_AI_RATE_LIMIT_CACHE``
(``pyhub_ai.ratelimit``), against:

- ``PYHUB_AI_RATE_LIMIT`` for each of the visitor's identities (``Visitor.meters()``): a
  signed-in user's account; for an anonymous visitor, their session and their client address,
  both (a visitor who drops the session cookie is still counted by address);
- ``PYHUB_AI_GLOBAL_RATE_LIMIT`` for the whole site, a ceiling on what every visitor together
  may spend.

A refusal raises ``UsageLimited``; the consumer answers it with a ``rate_limited`` error frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext

from . import ratelimit
from .conf import conf

SITE = "site"
VISITOR = "visitor"


@dataclass(frozen=True)
class Visitor:
    """Whose model calls these are: a signed-in ``user_id``; else an anonymous visitor's
    ``session`` (the hash that keys their thread, empty without a session cookie) and their
    client ``address`` (empty when the server does not know it)."""

    user_id: Any = None
    session: str = ""
    address: str = ""

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


def admit_model_call(visitor: Visitor) -> None:
    """Count one model call for ``visitor`` and for the site; raise ``UsageLimited`` when a limit
    is used up. Synchronous (the chat consumer calls it in the database call that starts a turn).

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
