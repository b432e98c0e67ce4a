"""The seed-004 tutorial's consumer, fed by the room it serves.

The class is the tutorial's, with one addition: ``aget_conversation()`` loads the
conversation together with its room (one query, ``select_related``), so that
``get_llm_prompt_context_data()`` — a *sync* hook called inside async code — can read the
room's language, situation and level without touching the database. A conversation that
belongs to no room gets the tutorial's hard-coded values, as before.
"""
from __future__ import annotations

from pathlib import Path

from pyhub_ai.consumers import AgentChatConsumer, DataAnalystChatConsumer  # noqa: F401
from pyhub_ai.models import Conversation
from pyhub_ai.specs import LLMModel

from .models import LLMChatRoom

#: The small data set the demo's data room answers questions about.
SALES_CSV = Path(__file__).resolve().parent / "data" / "sales.csv"


class LanguageTutorChatConsumer(AgentChatConsumer):
    llm_model = LLMModel.OPENAI_GPT_4O
    llm_temperature = 1
    llm_system_prompt_template = """
You are a language tutor.
{언어}로 대화를 나눕시다. 번역과 발음을 제공하지 않고 {언어}로만 답변해주세요.
"{상황}"의 상황으로 상황극을 진행합니다.
가능한한 {언어} {레벨}에 맞는 단어와 표현을 사용해주세요.
"""
    llm_first_user_message_template = "첫 문장으로 대화를 시작해주세요."

    #: The room of the connected conversation, set by ``aget_conversation()`` (``None``: no room).
    room: LLMChatRoom | None = None

    def get_llm_prompt_context_data(self) -> dict:
        if self.room is not None:
            return self.room.get_prompt_context_data()
        return {
            "언어": "중국어",
            "상황": "스타벅스에서 커피를 주문하는 상황",
            "레벨": "초급",
        }

    # Accept the websocket whether or not the visitor is signed in.
    async def can_accept(self) -> bool:
        return True

    async def aget_conversation(self) -> Conversation | None:
        """The conversation of the URL, loaded with its room (which is kept in ``self.room``).

        Access is still checked afterwards by ``can_access_conversation()``: a conversation a
        user started in a room is theirs only.
        """
        pk = self.get_conversation_pk()
        if pk is None:
            return None
        try:
            conversation = await Conversation.objects.select_related(*LLMChatRoom.CONVERSATION_RELATIONS).aget(pk=pk)
        except (Conversation.DoesNotExist, ValueError):
            return None
        self.room = LLMChatRoom.of_conversation(conversation)
        return conversation


class SalesAnalystChatConsumer(DataAnalystChatConsumer):
    """The demo's data room: questions about the coffee sales in ``example/data/sales.csv``.

    Each signed-in user has their own conversation (see ``views.sales_analyst_chat``); the
    model answers with the data analyst's safe tools, never with code of its own.
    """

    llm_model = LLMModel.OPENAI_GPT_4O
    dataframe_path = SALES_CSV
    column_guideline = (
        "date: the week (ISO date); region: the city; product: the drink; units: cups sold; "
        "unit_price and revenue: Korean won."
    )
