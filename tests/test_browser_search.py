"""Searching one's messages in a real browser: a Korean word, then the conversation opened at
the message found (pages older than the latest one are loaded until it comes).

Run with the browser suite (``pytest -m browser``). Screenshots: ``search-*.png``.
"""
from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from playwright.async_api import expect

from example.models import LLMChatRoom
from pyhub_ai.models import ConversationMessage

from .test_browser import browser_user, screenshot  # noqa: F401
from .test_browser_ux import browser, check, fast_server, open_page, sign_in  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def long_korean_room(browser_user, django_user_model) -> LLMChatRoom:
    """A room whose 60 messages hold "스타벅스에서" once, far above the latest page (20)."""
    room = LLMChatRoom.objects.create(created_by=browser_user)
    other = django_user_model.objects.create_user(username="someone-else", password="x")
    rows = []
    for n in range(60):
        text = "어제 스타벅스에서 라떼를 마셨어요" if n == 4 else f"message {n}"
        rows.append(ConversationMessage.from_message(HumanMessage(text) if n % 2 == 0 else AIMessage(text),
                                                     conversation=room.conversation, user=browser_user))
    rows.append(ConversationMessage.from_message(HumanMessage("스타벅스에서 만나요 (not yours)"), conversation=room.conversation, user=other))
    ConversationMessage.objects.bulk_create(rows)
    return room


async def test_a_korean_word_is_found_and_opens_its_conversation_at_the_message(fast_server, browser, long_korean_room) -> None:
    session = await open_page(browser, locale="ko-KR", viewport=(1024, 700))
    page = session.page
    await sign_in(page, fast_server)

    await page.locator("#site-search").click()
    await page.locator("#search-q").fill("스타벅스")
    await page.locator("#search-submit").click()

    hits = page.locator(".hits .hit")
    await expect(hits).to_have_count(1)  # never another user's message
    await expect(hits.locator("mark")).to_have_text("스타벅스")
    await expect(hits).to_contain_text("어제 스타벅스에서 라떼를 마셨어요")
    await screenshot(page, "search-01-results-korean")

    await hits.click()
    target = page.locator('#pyhub-chat-messages .pyhub-msg[data-target="true"]')
    await expect(target).to_contain_text("어제 스타벅스에서 라떼를 마셨어요", timeout=10_000)
    await expect(target).to_be_in_viewport()
    await expect(page.locator("#pyhub-chat-jump")).to_be_visible()  # the newest messages are below
    await screenshot(page, "search-02-opened-at-the-message")
    check(session)
