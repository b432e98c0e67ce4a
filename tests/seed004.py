"""Seed 004's user code, copied verbatim from the tutorial (consumer and view), to prove it runs
unchanged; the example app grew room settings on top of it."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from example.models import LLMChatRoom
from pyhub_ai.consumers import AgentChatConsumer, DataAnalystChatConsumer  # noqa: F401
from pyhub_ai.specs import LLMModel


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

    def get_llm_prompt_context_data(self) -> dict:
        return {
            "언어": "중국어",
            "상황": "스타벅스에서 커피를 주문하는 상황",
            "레벨": "초급",
        }

    # 로그인 여부에 상관없이, 웹소켓 접속을 허용하기
    async def can_accept(self) -> bool:
        return True


@login_required
def language_tutor_chat(request, room_pk: int):
    llm_chat_room, __ = LLMChatRoom.objects.get_or_create(pk=room_pk)
    conversation_pk = llm_chat_room.conversation.pk
    ws_url = f"/ws/example/chat/{conversation_pk}/"
    return render(request, "pyhub_ai/chat_room_ws.html", {
        "ws_url": ws_url,
    })
