"""Template filters of the demo pages (example/templates)."""
from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext

register = template.Library()

#: Activity newer than this reads "just now" (``timesince`` would say "0 minutes").
JUST_NOW = timedelta(minutes=1)


@register.filter
def ago(value: datetime | None) -> str:
    """How long ago ``value`` was: "just now" within a minute, else "5 minutes ago"."""
    if not value:
        return ""
    if timezone.now() - value < JUST_NOW:
        return gettext("just now")
    return gettext("%(when)s ago") % {"when": timesince(value)}
