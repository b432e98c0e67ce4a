"""The room form: a title and the tutor's language, situation and level."""
from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import LLMChatRoom


class LLMChatRoomForm(forms.ModelForm):
    """Creates and edits a room (its conversations are not touched)."""

    class Meta:
        model = LLMChatRoom
        fields = ["title", "language", "situation", "level"]
        help_texts = {"title": _("Optional. Without one, the room is named after its language and situation.")}

    def clean_title(self) -> str:
        return " ".join(self.cleaned_data["title"].split())
