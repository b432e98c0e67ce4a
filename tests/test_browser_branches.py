"""Edit, regenerate and switch branches in a real browser (Chromium against a live daphne).

Run with the browser suite (``pytest -m browser``). Screenshots: test-artifacts/screenshots/
``branches-*.png``.
"""
from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from .test_browser import HUMAN, browser_user, screenshot  # noqa: F401
from .test_browser_ux import (  # noqa: F401  (fixtures)
    COMPLETE,
    REPLY_TIMEOUT_MS,
    browser,
    check,
    fast_server,
    open_room,
    room,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def answer_to(page: Page, text: str):
    return page.locator(COMPLETE).filter(has_text=f"“{text}”")  # the offline model quotes the question


async def say(page: Page, text: str) -> None:
    await page.locator("#pyhub-chat-input").fill(text)
    await page.locator("#pyhub-chat-input").press("Enter")
    await expect(answer_to(page, text)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)


async def human_texts(page: Page) -> list[str]:
    return await page.locator(HUMAN + " .pyhub-msg-body").all_inner_texts()


async def test_editing_a_message_makes_a_branch_that_can_be_switched_back_and_forth_and_survives_a_reload(fast_server, browser, room) -> None:
    session, page = await open_room(browser, fast_server, room)
    await say(page, "one")
    await say(page, "two")

    second = page.locator(HUMAN).nth(1)
    await second.locator(".pyhub-msg-edit").click()
    editor = second.locator(".pyhub-msg-edit-input")
    await expect(editor).to_be_focused()
    await expect(editor).to_have_value("two")
    await screenshot(page, "branches-01-editing")
    await editor.fill("two, edited")
    await editor.press("Enter")

    await expect(answer_to(page, "two, edited")).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    assert await human_texts(page) == ["one", "two, edited"]
    await expect(page.locator(HUMAN).nth(1).locator(".pyhub-msg-version")).to_have_text("2 / 2")
    await expect(answer_to(page, "two")).to_have_count(0)
    await screenshot(page, "branches-02-edited")

    # Back to the first version: the old message and the reply it had.
    await page.locator(HUMAN).nth(1).locator(".pyhub-msg-version-prev").click()
    await expect(page.locator(HUMAN).nth(1).locator(".pyhub-msg-version")).to_have_text("1 / 2")
    assert await human_texts(page) == ["one", "two"]
    await expect(answer_to(page, "two")).to_have_count(1)
    await expect(page.locator(HUMAN).nth(1).locator(".pyhub-msg-version-prev")).to_be_disabled()
    await screenshot(page, "branches-03-first-version")

    # The choice is kept: a reload shows the same branch.
    await page.reload()
    await expect(page.locator("#pyhub-chat-connection")).to_have_attribute("data-state", "open")
    await expect(page.locator(HUMAN).nth(1).locator(".pyhub-msg-version")).to_have_text("1 / 2")
    assert await human_texts(page) == ["one", "two"]

    # Forward again, and the next message continues the branch shown.
    await page.locator(HUMAN).nth(1).locator(".pyhub-msg-version-next").click()
    await expect(page.locator(HUMAN).nth(1).locator(".pyhub-msg-version")).to_have_text("2 / 2")
    await say(page, "three")
    assert await human_texts(page) == ["one", "two, edited", "three"]
    await page.reload()
    await expect(page.locator(HUMAN)).to_have_count(3)
    assert await human_texts(page) == ["one", "two, edited", "three"]
    check(session)


async def test_regenerate_keeps_the_question_once_and_shows_both_replies_as_versions(fast_server, browser, room) -> None:
    session, page = await open_room(browser, fast_server, room, locale="ko-KR", color_scheme="dark")
    await say(page, "다시 답해 주세요")
    first_id = await answer_to(page, "다시 답해 주세요").get_attribute("data-id")

    await answer_to(page, "다시 답해 주세요").locator(".pyhub-msg-regenerate").click()

    replies = answer_to(page, "다시 답해 주세요")
    await expect(replies.locator(".pyhub-msg-version")).to_have_text("2 / 2", timeout=REPLY_TIMEOUT_MS)
    assert await replies.get_attribute("data-id") != first_id
    await expect(page.locator(HUMAN)).to_have_count(1)
    await screenshot(page, "branches-04-regenerated-korean-dark")
    await replies.locator(".pyhub-msg-version-prev").click()
    await expect(page.locator(f'.pyhub-msg[data-id="{first_id}"] .pyhub-msg-version')).to_have_text("1 / 2")
    check(session)
