"""The seed-004 tutorial's room model, written exactly as a pyhub_ai user writes it."""
from django.db import models
from django_lifecycle import BEFORE_CREATE, LifecycleModel, hook

from pyhub_ai.models import Conversation


# Note: inherit LifecycleModel, not models.Model, or the @hook below is never called.
class LLMChatRoom(LifecycleModel):
    conversation = models.OneToOneField(
        Conversation,
        on_delete=models.CASCADE,
    )

    # Called right before the instance is first saved.
    @hook(BEFORE_CREATE)
    def on_before_create(self):
        # If this model had an owner field, it would be passed here.
        owner = None
        self.conversation = Conversation.objects.create(user=owner)
