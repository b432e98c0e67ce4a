"""Fixed-window counters in Django's cache, so a limit holds across workers (with a shared cache
such as Redis; the default local-memory cache counts per process).

The mechanism only: ``pyhub_ai.usage`` decides what is counted and against which limit.
"""
from __future__ import annotations

import re
import time

from django.core.cache import caches

from .conf import conf

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"30/m"`` → ``(30, 60)``: that many events per that many seconds. Raises ``ValueError``."""
    match = _RATE.match(rate)
    if not match:
        raise ValueError(f"{rate!r} is not a rate like '30/m' (units: s, m, h, d).")
    return int(match.group(1)), _PERIODS[match.group(2)[0]]


def hit(meter: str, rate: str) -> bool:
    """Count one event on ``meter``; ``False`` once ``rate`` (like ``"30/m"``) is used up in the
    current window. Refused events count too. Synchronous."""
    limit, period = parse_rate(rate)
    key = f"pyhub_ai:usage:{meter}:{period}:{int(time.time() // period)}"
    cache = caches[conf.RATE_LIMIT_CACHE]
    if cache.add(key, 1, timeout=period + 1):
        return limit >= 1
    try:
        return cache.incr(key) <= limit
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=period + 1)
        return limit >= 1
