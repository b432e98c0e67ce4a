"""Safe, structured tools over a pandas DataFrame for ``DataAnalystChatConsumer``.

Needs the optional ``pyhub_ai[data]`` extra (pandas, matplotlib). Nothing here executes code
the model writes: the model picks a tool and fills in arguments that are validated (column
names must exist, operators and aggregations come from fixed lists) before pandas runs.
"""
from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


def require_data_extra() -> None:
    """Raise a clear error naming the extra when pandas or matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
        import pandas  # noqa: F401
    except ImportError as exc:
        raise ImproperlyConfigured(
            f'DataAnalystChatConsumer needs pandas and matplotlib: pip install "pyhub_ai[data]" ({exc}).'
        ) from exc
