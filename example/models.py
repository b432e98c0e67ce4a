"""The seed-004 tutorial's room model, grown the way its next step suggests.

``LLMChatRoom`` and its ``on_before_create`` hook are written exactly as in the tutorial; the
fields below it (language, situation, level, title, created_at, created_by) are the "room
settings" the tutorial leaves for later. A room's first conversation is the tutorial's
owner-less ``conversation`` (every user has a private thread in it); a user who starts a new
conversation in the room gets one of their own, linked by a ``RoomConversation``.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db import models, transaction
from django.utils import translation
from django.utils.translation import gettext, gettext_lazy as _
from django_lifecycle import BEFORE_CREATE, LifecycleModel, hook

from pyhub_ai.models import Conversation, ConversationMessage


class Language(models.TextChoices):
    CHINESE = "zh", _("Chinese")
    ENGLISH = "en", _("English")
    JAPANESE = "ja", _("Japanese")
    SPANISH = "es", _("Spanish")
    FRENCH = "fr", _("French")
    GERMAN = "de", _("German")
    KOREAN = "ko", _("Korean")


class Situation(models.TextChoices):
    STARBUCKS = "starbucks", _("Ordering coffee at Starbucks")
    RESTAURANT = "restaurant", _("Ordering food at a restaurant")
    HOTEL = "hotel", _("Checking in at a hotel")
    DIRECTIONS = "directions", _("Asking for directions")
    SHOPPING = "shopping", _("Shopping for clothes")
    AIRPORT = "airport", _("Checking in at the airport")
    INTERVIEW = "interview", _("A job interview")
    SMALL_TALK = "small_talk", _("Small talk with a new friend")


class Level(models.TextChoices):
    BEGINNER = "beginner", _("Beginner")
    INTERMEDIATE = "intermediate", _("Intermediate")
    ADVANCED = "advanced", _("Advanced")


#: The language the tutorial's prompt template is written in; its placeholders are filled with
#: the names of the room's choices in this language (see ``LLMChatRoom.get_prompt_context_data``).
PROMPT_LANGUAGE = "ko"


# Note: inherit LifecycleModel, not models.Model, or the @hook below is never called.
class LLMChatRoom(LifecycleModel):
    conversation = models.OneToOneField(
        Conversation,
        on_delete=models.CASCADE,
    )
    # The defaults are the tutorial's hard-coded room: Chinese, at Starbucks, for beginners.
    language = models.CharField(_("language"), max_length=8, choices=Language.choices, default=Language.CHINESE)
    situation = models.CharField(_("situation"), max_length=32, choices=Situation.choices, default=Situation.STARBUCKS)
    level = models.CharField(_("level"), max_length=16, choices=Level.choices, default=Level.BEGINNER)
    title = models.CharField(_("title"), max_length=100, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
        help_text=_("May rename and delete the room (staff may too). Everyone may chat in it."),
    )

    #: What ``select_related()`` needs on a Conversation for ``of_conversation()``.
    CONVERSATION_RELATIONS = ("llmchatroom", "room_conversation__room")

    class Meta:
        ordering = ["-pk"]
        verbose_name = _("chat room")
        verbose_name_plural = _("chat rooms")

    def __str__(self) -> str:
        return self.title or self.get_generated_title()

    # Called right before the instance is first saved.
    @hook(BEFORE_CREATE)
    def on_before_create(self):
        # If this model had an owner field, it would be passed here.
        owner = None
        self.conversation = Conversation.objects.create(user=owner)

    def get_generated_title(self) -> str:
        """A title made of the room's settings, e.g. "Chinese · Ordering coffee at Starbucks"."""
        return f"{self.get_language_display()} · {self.get_situation_display()}"

    def get_settings_display(self) -> str:
        """The room's settings in one line, e.g. "Chinese · Ordering coffee at Starbucks · Beginner"."""
        return f"{self.get_generated_title()} · {self.get_level_display()}"

    def get_prompt_context_data(self) -> dict[str, str]:
        """The tutorial prompt's placeholders, filled from this room's settings.

        The tutorial's prompt is Korean, so the names are given in Korean whatever the
        visitor's language is: a new room gives exactly the tutorial's
        ``{"언어": "중국어", "상황": "스타벅스에서 커피를 주문하는 상황", "레벨": "초급"}``.
        """
        with translation.override(PROMPT_LANGUAGE):
            return {
                "언어": str(self.get_language_display()),
                "상황": str(self.get_situation_display()),
                "레벨": str(self.get_level_display()),
            }

    def can_manage(self, user) -> bool:
        """Whether ``user`` may edit or delete the room: its creator, or staff."""
        return bool(user.is_authenticated and (user.is_staff or (self.created_by_id and self.created_by_id == user.pk)))

    def conversations_of(self, user) -> models.QuerySet[Conversation]:
        """The conversations of this room ``user`` may open: the room's shared first
        conversation (where ``user`` has a private thread) and the ones ``user`` started."""
        return Conversation.objects.filter(
            models.Q(pk=self.conversation_id) | models.Q(room_conversation__room=self, user=user)
        )

    def has_conversations_of_others(self, user) -> bool:
        """Whether anybody but ``user`` has something in this room: a thread of the room's first
        conversation (another user's, or an anonymous visitor's), or a conversation they started."""
        others_threads = ConversationMessage.objects.filter(conversation_id=self.conversation_id).exclude(user=user)
        others_conversations = self.room_conversations.exclude(conversation__user=user)
        return others_threads.exists() or others_conversations.exists()

    def can_delete(self, user) -> bool:
        """Whether ``user`` may delete the room, and so every conversation in it.

        Its creator (or staff) may, while nothing in it is anybody else's; a moderator who may
        delete conversations (the ``pyhub_ai.delete_conversation`` permission, as in the admin)
        may in any case.
        """
        if not self.can_manage(user):
            return False
        return user.has_perm("pyhub_ai.delete_conversation") or not self.has_conversations_of_others(user)

    def delete_as(self, user) -> None:
        """Delete the room with every conversation in it, if ``user`` may (``can_delete()``);
        ``PermissionDenied`` otherwise.

        Decided and done in one transaction that first locks the room's conversations: a
        message stored in one of them meanwhile is either seen by the check, or waits and then
        finds its conversation gone. Never deletes what ``can_delete()`` did not see.
        """
        with transaction.atomic():
            conversations = Conversation.objects.filter(models.Q(pk=self.conversation_id) | models.Q(room_conversation__room=self))
            locked = list(Conversation.objects.select_for_update().filter(pk__in=conversations.values("pk")).values_list("pk", flat=True))
            if not self.can_delete(user):
                raise PermissionDenied(gettext("Other people have conversations in this room, so you cannot delete it."))
            Conversation.objects.filter(pk__in=locked).delete()  # cascades to this room and its RoomConversation rows

    @staticmethod
    def of_conversation(conversation: Conversation) -> LLMChatRoom | None:
        """The room ``conversation`` belongs to, or ``None``.

        Load ``conversation`` with ``select_related(*LLMChatRoom.CONVERSATION_RELATIONS)``:
        the relations are then cached (a missing one as ``None``), so this never queries and
        is safe in async code.
        """
        try:
            return conversation.llmchatroom
        except ObjectDoesNotExist:
            pass
        try:
            return conversation.room_conversation.room
        except ObjectDoesNotExist:
            return None


class RoomConversation(models.Model):
    """A conversation a user started in a room, after the room's first one."""

    room = models.ForeignKey(
        LLMChatRoom, on_delete=models.CASCADE, related_name="room_conversations", verbose_name=_("chat room")
    )
    conversation = models.OneToOneField(
        Conversation, on_delete=models.CASCADE, related_name="room_conversation", verbose_name=_("conversation")
    )

    class Meta:
        ordering = ["pk"]
        verbose_name = _("room conversation")
        verbose_name_plural = _("room conversations")

    def __str__(self) -> str:
        return f"{self.room} / {self.conversation}"
