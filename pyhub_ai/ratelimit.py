"""A per-visitor limit on chat turns, counted in Django's cache so it holds across workers
(with a shared cache such as Redis; the default local-memory cache counts per process)."""
from __future__ import annotations

import re
import time

from django.core.cache import caches

from .conf import conf

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"30/m"`` → ``(30, 60)``: that many turns per that many seconds. Raises ``ValueError``."""
    match = _RATE.match(rate)
    if not match:
        raise ValueError(f"{rate!r} is not a rate like '30/m' (units: s, m, h, d).")
    return int(match.group(1)), _PERIODS[match.group(2)[0]]


def allow_turn(identity: str) -> bool:
    """Count one turn for ``identity``; ``False`` once its limit for the current window is used up.

    Synchronous: the chat consumer calls it in the database call that starts the turn.
    """
    if not conf.RATE_LIMIT:
        return True
    limit, period = parse_rate(conf.RATE_LIMIT)
    key = f"pyhub_ai:turns:{identity}:{int(time.time() // period)}"
    cache = caches[conf.RATE_LIMIT_CACHE]
    if cache.add(key, 1, timeout=period + 1):
        return True
    try:
        return cache.incr(key) <= limit
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=period + 1)
        return True
