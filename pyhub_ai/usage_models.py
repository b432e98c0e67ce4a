"""The usage ledger's tables: one ``UsageRecord`` per model call, ``UsageTotal`` per subject and day.

``pyhub_ai.ledger`` builds the rows; ``pyhub_ai.history`` writes them, with
``pyhub_ai.statements.insert_usage``, in the transaction that stores the call's reply (or tool
step), so a call is counted exactly when its reply is stored. ``pyhub_ai.budgets`` reads the
daily totals (one indexed query: at most 31 rows per subject), never the ledger itself.

Deleting a conversation or a user keeps their ledger rows (the link becomes empty): what was
spent stays spent, for the site's totals and for budgets, which count ``UsageTotal`` rows.

Imported by ``pyhub_ai.models``, so Django finds these models.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .models import Conversation

#: The ``UsageTotal.subject`` of the whole site.
SITE_SUBJECT = "site"


class UsageRecord(models.Model):
    """One model call: the tokens its provider reported, the model, whose call it was, its cost."""

    created_at = models.DateTimeField(_("time"), db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,  # pyhub_ai_usage_user_idx (user, created_at) serves it: one index less to write per call
        related_name="+",
        verbose_name=_("user"),
    )
    visitor_key = models.CharField(
        _("visitor key"), max_length=64, blank=True, default="", help_text=_("For anonymous visitors: a hash of their session key.")
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("conversation")
    )
    turn_id = models.UUIDField(_("turn"), null=True, blank=True)
    model = models.CharField(_("model"), max_length=200, help_text=_('"provider:model", as the consumer\'s get_llm_model() gave it.'))
    input_tokens = models.PositiveIntegerField(_("input tokens"), default=0)
    output_tokens = models.PositiveIntegerField(_("output tokens"), default=0)
    cached_tokens = models.PositiveIntegerField(
        _("cached input tokens"), default=0, help_text=_("Input tokens the provider read from its prompt cache (part of the input tokens).")
    )
    cost = models.DecimalField(_("cost"), max_digits=20, decimal_places=10, default=0)
    priced = models.BooleanField(
        _("priced"), default=True, help_text=_("False: the model is not in PYHUB_AI_MODEL_PRICES, so its cost is counted as 0.")
    )
    estimated = models.BooleanField(
        _("estimated"),
        default=False,
        help_text=_("The provider reported no usage (the reply was cut short): the tokens are pyhub_ai's estimate."),
    )

    class Meta:
        ordering = ["-pk"]
        verbose_name = _("usage record")
        verbose_name_plural = _("usage records")
        indexes = [models.Index(fields=["user", "created_at"], name="pyhub_ai_usage_user_idx")]

    def __str__(self) -> str:
        return f"{self.model} #{self.pk}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class UsageTotal(models.Model):
    """What one subject spent on one day (in ``TIME_ZONE``): the sums of its ledger rows.

    ``subject``: ``"user:<id>"``, ``"visitor:<visitor key>"`` (an anonymous session),
    ``"address:<ip>"`` (an anonymous visitor without a session) or ``"site"``.
    """

    subject = models.CharField(_("subject"), max_length=100)
    day = models.DateField(_("day"))
    tokens = models.PositiveBigIntegerField(_("tokens"), default=0)
    cost = models.DecimalField(_("cost"), max_digits=20, decimal_places=10, default=0)
    calls = models.PositiveIntegerField(_("model calls"), default=0)

    class Meta:
        verbose_name = _("usage total")
        verbose_name_plural = _("usage totals")
        constraints = [models.UniqueConstraint(fields=["subject", "day"], name="pyhub_ai_usage_total_day")]

    def __str__(self) -> str:
        return f"{self.subject} {self.day}"
