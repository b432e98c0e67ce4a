"""Token estimates stored with each message, so the history window never re-counts.

The default counter is a fast approximation that works offline: about four characters per
token for Latin text, one token per character for CJK text (Korean, Chinese, Japanese), plus
a small overhead per message. Set ``PYHUB_AI_TOKEN_COUNTER`` to the dotted path of any
``callable(message) -> int`` (a tiktoken-based one, say) for exact counts.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Callable

from django.utils.module_loading import import_string
from langchain_core.messages import AIMessage, BaseMessage

from .conf import conf

#: Tokens every message costs beyond its text (role and separators).
MESSAGE_OVERHEAD = 4


def approximate_token_count(message: BaseMessage) -> int:
    """A fast, offline estimate of the tokens ``message`` costs in a prompt."""
    text = message.text
    if isinstance(message, AIMessage) and message.tool_calls:
        text += json.dumps([call["args"] for call in message.tool_calls], ensure_ascii=False)
    wide = 0 if text.isascii() else sum(1 for char in text if ord(char) >= 0x1100)  # isascii: no per-character loop for Latin text
    return MESSAGE_OVERHEAD + wide + (len(text) - wide + 3) // 4


@lru_cache(maxsize=8)
def _load_counter(path: str) -> Callable[[BaseMessage], int]:
    return import_string(path)


def token_counter() -> Callable[[BaseMessage], int]:
    """The configured counter (``PYHUB_AI_TOKEN_COUNTER``): look it up once to count many messages."""
    return _load_counter(conf.TOKEN_COUNTER)


def count_tokens(message: BaseMessage) -> int:
    """Count with the configured counter (``PYHUB_AI_TOKEN_COUNTER``)."""
    return int(token_counter()(message))
