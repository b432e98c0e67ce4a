"""The usage ledger: what one model call used and cost, as a ``UsageRecord`` row.

The chat consumer tells a turn which call is running (``ChatMixin.stream_reply`` sets
``Turn.call`` to a ``ModelCall`` before it calls the model); when the history stores that
call's reply or tool step (``DjangoChatMessageHistory.finish_turn`` / ``aadd_tool_step``), it
turns the call into a ledger row with ``record()`` and inserts it, with the subject's daily
totals, in the same transaction (``statements.insert_usage``). A step refused before the model
was called has no ``ModelCall``, so no row.

Tokens are the provider's (``usage_metadata``: input, output, and cached input from
``input_token_details.cache_read``). A call cut short before the provider reported its usage
(a stopped reply, a failure mid-stream) is still counted, with pyhub_ai's estimate (the
prompt's and the partial reply's token counts, ``pyhub_ai.tokens``) and ``estimated=True``:
stopping every reply early must not spend for free.

The cost comes from ``PYHUB_AI_MODEL_PRICES`` (per million tokens); a model that is not listed
costs 0 and its row has ``priced=False``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone
from langchain_core.messages import AIMessage, BaseMessage

from .conf import conf
from .tokens import token_counter
from .usage_models import SITE_SUBJECT as SITE, UsageRecord

MILLION = Decimal(1_000_000)


def day_of(moment: datetime) -> date:
    """The day whose totals a call at ``moment`` counts for: its date in ``TIME_ZONE`` (budgets'
    days and months start at midnight there)."""
    return timezone.localtime(moment, timezone.get_default_timezone()).date()


@dataclass
class ModelCall:
    """A model call in progress: the model (``"provider:model"``), the prompt it was sent, and
    the budget subject its spending counts for (``pyhub_ai.budgets.subject_of``)."""

    model: str
    prompt: Sequence[BaseMessage]
    subject: str


PRICE_KEYS = ("input", "output", "cached_input")


def is_amount(value: Any) -> bool:
    """Whether ``value`` is a number >= 0 (not a bool): a price, or a budget's limit."""
    return not isinstance(value, bool) and isinstance(value, (int, float, Decimal)) and value >= 0


def price_problems(prices: Any) -> list[str]:
    """What is wrong with a ``PYHUB_AI_MODEL_PRICES`` value (empty: nothing), for ``pyhub_ai.E011``."""
    if not isinstance(prices, dict):
        return [f"it must be a dict, not {type(prices).__name__}"]
    problems = []
    for model, price in prices.items():
        if not isinstance(model, str) or ":" not in model:
            problems.append(f"{model!r} is not a 'provider:model' name (like 'openai:gpt-4o')")
        if not isinstance(price, dict):
            problems.append(f'{model!r}: the price must be a dict like {{"input": 2.5, "output": 10}}')
            continue
        for key, value in price.items():
            if key not in PRICE_KEYS:
                problems.append(f"{model!r}: unknown key {key!r} (use {', '.join(map(repr, PRICE_KEYS))})")
            elif not is_amount(value):
                problems.append(f"{model!r}: {key} must be a number >= 0 (per million tokens), not {value!r}")
    return problems


def price_of(model: str) -> dict[str, Decimal] | None:
    """The model's prices per million tokens (``input``, ``output``, ``cached_input``), or
    ``None`` when ``PYHUB_AI_MODEL_PRICES`` does not list it."""
    prices = conf.MODEL_PRICES.get(model)
    if prices is None:
        return None
    input_price = Decimal(str(prices.get("input", 0)))
    return {
        "input": input_price,
        "output": Decimal(str(prices.get("output", 0))),
        "cached_input": Decimal(str(prices.get("cached_input", input_price))),
    }


def cost_of(model: str, input_tokens: int, output_tokens: int, cached_tokens: int) -> tuple[Decimal, bool]:
    """``(cost, priced)`` of a call: cached input at its own price, the rest of the input and
    the output at theirs."""
    prices = price_of(model)
    if prices is None:
        return Decimal(0), False
    cached = min(cached_tokens, input_tokens)
    cost = (input_tokens - cached) * prices["input"] + cached * prices["cached_input"] + output_tokens * prices["output"]
    return cost / MILLION, True


def tokens_of(call: ModelCall, reply: AIMessage, reply_tokens: int) -> tuple[int, int, int, bool]:
    """``(input, output, cached, estimated)``: the provider's usage of ``reply``, else an estimate
    (``reply_tokens``: the stored reply's token count)."""
    usage = reply.usage_metadata
    if usage:
        cached = (usage.get("input_token_details") or {}).get("cache_read") or 0
        return usage.get("input_tokens", 0), usage.get("output_tokens", 0), cached, False
    counter = token_counter()
    return sum(int(counter(message)) for message in call.prompt), reply_tokens if reply.text else 0, 0, True


def record(call: ModelCall, reply: AIMessage, reply_row: Any, now: datetime) -> UsageRecord:
    """The ledger row of ``call``, whose reply ``reply`` is stored in ``reply_row`` (a
    ``ConversationMessage``: its thread and turn say whose call it was)."""
    input_tokens, output_tokens, cached_tokens, estimated = tokens_of(call, reply, reply_row.token_count)
    cost, priced = cost_of(call.model, input_tokens, output_tokens, cached_tokens)
    return UsageRecord(
        created_at=now,
        user_id=reply_row.user_id,
        visitor_key=reply_row.visitor_key,
        conversation_id=reply_row.conversation_id,
        turn_id=reply_row.turn_id,
        model=call.model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        cost=cost,
        priced=priced,
        estimated=estimated,
    )
