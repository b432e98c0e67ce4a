"""``loop_clock()``: the running event loop's clock, read for every streamed token."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def loop_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """``loop.time``, or ``time.monotonic`` itself when ``loop.time`` is asyncio's (which
    returns ``time.monotonic()``): the same clock without a Python call around it.

    Read for every arrival of a streamed body (``lean_http._Watchdog``, the read timeout) and
    every token of a reply (``ChatMixin.stream_reply``, the per-token deadline): two Python
    calls per token less (``bench.turn_calls``, 2026-11-30). Another loop (uvloop) keeps its own
    ``time``, which ``call_at`` compares against."""
    if type(loop).time is asyncio.BaseEventLoop.time:
        return time.monotonic
    return loop.time
