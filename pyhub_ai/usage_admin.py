"""The usage ledger in the admin: its rows, read-only, and a usage page (per user and per day,
tokens and cost, a chart drawn on the server, CSV export). Imported by ``pyhub_ai.admin``.

The usage page is ``UsageRecordAdmin.report_view`` (``admin:pyhub_ai_usagerecord_report``),
behind ``admin_site.admin_view`` (staff only) and the ledger's view permission.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext, gettext_lazy as _

from . import usage_report
from .checkpoint_admin import ReadOnlyAdmin
from .usage_models import UsageRecord

#: Rows shown of the per-user and per-user-and-day tables (the CSV has every row).
ROWS_SHOWN = 200
#: The periods the usage page offers, in days.
REPORT_PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    """The ledger's rows, never added, changed or deleted here: what was spent stays spent."""

    list_display = ["created_at", "user", "visitor", "conversation", "model", "input_tokens", "output_tokens", "cached_tokens", "cost", "priced", "estimated"]
    list_filter = ["model", "priced", "estimated", "created_at"]
    list_select_related = ["user", "conversation"]
    date_hierarchy = "created_at"
    search_fields = ["model", "user__username"]
    change_list_template = "admin/pyhub_ai/usage/change_list.html"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("visitor"))
    def visitor(self, record: UsageRecord) -> str:
        """An anonymous visitor's key, shortened (it is a hash of their session key)."""
        return record.visitor_key[:12]

    def get_urls(self) -> list:
        report = path("report/", self.admin_site.admin_view(self.report_view), name="pyhub_ai_usagerecord_report")
        return [report, *super().get_urls()]

    def report_view(self, request: HttpRequest) -> HttpResponse:
        """The usage page: ``?days=`` (7, 30 or 90), ``?user=`` (one user's id), ``?format=csv``."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        days = _choice(request.GET.get("days"), REPORT_PERIODS, DEFAULT_PERIOD)
        user_id = request.GET.get("user")
        user_id = int(user_id) if user_id and user_id.isdigit() and len(user_id) < 19 else None
        first, last = usage_report.period(days)
        rows = usage_report.usage_rows(first, last, user_id=user_id)
        if request.GET.get("format") == "csv":
            return usage_report.csv_response(rows, f"pyhub-ai-usage-{first}-{last}.csv")
        per_day = usage_report.daily_totals(rows, first, last)
        measure = "cost" if any(row.cost for row in per_day) else "tokens"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": gettext("Usage"),
            "days": days,
            "periods": REPORT_PERIODS,
            "first": first,
            "last": last,
            "user_id": user_id,
            "user_name": next((row.user for row in rows), "") if user_id is not None else "",
            "rows": rows[:ROWS_SHOWN],
            "per_user": usage_report.per_user(rows)[:ROWS_SHOWN],
            "rows_hidden": max(len(rows) - ROWS_SHOWN, 0),
            "per_day": per_day[::-1],
            "total": usage_report.total(per_day),
            "measure": measure,
            "chart": usage_report.chart_bars(per_day, measure),
        }
        return TemplateResponse(request, "admin/pyhub_ai/usage/report.html", context)


def _choice(value: str | None, choices: tuple[int, ...], default: int) -> int:
    return int(value) if value and value.isdigit() and int(value) in choices else default

