"""Model choice: the visitor picks the model of their thread from the consumer's list."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.translation import gettext

from ..models import Conversation
from ..specs import LLMModel
from .protocol import FrameError

#: ``Conversation.metadata`` key of the models chosen in the conversation, by thread.
METADATA_KEY = "llm_models"
#: ``response_metadata`` key of a stored reply: the model that answered it.
REPLY_METADATA_KEY = "pyhub_ai_model"

ModelChoice = LLMModel | str | tuple[LLMModel | str, str]


def model_value(model: LLMModel | str) -> str:
    return model.value if isinstance(model, LLMModel) else str(model)


class ModelChoiceMixin:
    """Lets the visitor choose among ``llm_model_choices`` (none: the choice is off).

    ``get_llm_model()`` returns the thread's chosen model when it is still one of
    ``get_llm_model_choices()``, else the consumer's own (``llm_model``). ``select_llm_model()``
    (called by the consumer for a ``select_model`` frame) validates the choice, stores it on the
    conversation (``metadata["llm_models"]``, by thread: in a shared room each visitor chooses
    for their own thread) and tells every tab of the thread (``model_selected``). The welcome
    frame lists the choices (``model_choices_frame_data()``).
    """

    llm_model_choices: Sequence[ModelChoice] | None = None

    def get_llm_model_choices(self) -> list[tuple[str, str]]:
        """``(value, label)`` of each model the visitor may choose; a bare model is labelled by
        its name (``"openai:gpt-4o"`` → ``"gpt-4o"``)."""
        choices = []
        for choice in self.llm_model_choices or ():
            model, label = choice if isinstance(choice, tuple) else (choice, "")
            value = model_value(model)
            choices.append((value, label or value.partition(":")[2] or value))
        return choices

    def get_chosen_llm_model(self) -> str | None:
        """The thread's stored choice, if it is still offered."""
        conversation = getattr(self, "conversation", None)
        if conversation is None:
            return None
        chosen = (conversation.metadata or {}).get(METADATA_KEY, {}).get(self.history.thread_key)
        return chosen if chosen in dict(self.get_llm_model_choices()) else None

    def get_llm_model(self) -> LLMModel | str:
        return self.get_chosen_llm_model() or super().get_llm_model()

    def model_choices_frame_data(self) -> dict[str, Any]:
        """What the welcome frame says of the choice: ``models`` and the current ``model``."""
        choices = self.get_llm_model_choices()
        if not choices:
            return {}
        return {"models": [{"value": value, "label": label} for value, label in choices], "model": model_value(self.get_llm_model())}

    async def select_llm_model(self, value: str) -> None:
        """Store ``value`` as the thread's model (next turns use it) and tell its tabs."""
        if value not in dict(self.get_llm_model_choices()):
            raise FrameError("invalid_model", gettext("This model cannot be chosen here."), f"model {value!r} not offered")
        conversation = self.conversation
        metadata = dict(conversation.metadata or {})
        metadata[METADATA_KEY] = {**metadata.get(METADATA_KEY, {}), self.history.thread_key: value}
        await Conversation.objects.filter(pk=conversation.pk).aupdate(metadata=metadata)
        conversation.metadata = metadata
        await self.send_turn_frame("model_selected", model=value)

    def annotate_reply(self, ai_message: Any) -> None:
        """Record the model that answered in the stored reply's ``response_metadata``
        (``pyhub_ai_model``), when the visitor may choose one."""
        super().annotate_reply(ai_message)
        if self.get_llm_model_choices():
            ai_message.response_metadata[REPLY_METADATA_KEY] = model_value(self.get_llm_model())
