"""The demo's data room in a real browser: a question answered with a table, another with a chart.

The live daphne has no API key, so the offline demo model answers; bound to the data
analyst's tools it calls ``describe_data`` for "describe" and ``draw_chart`` for "chart"
(see ``pyhub_ai.llm.OfflineChatModel``): the whole real path runs, tools included.
"""
from __future__ import annotations

import pytest
from playwright.async_api import async_playwright, expect

from tests.live_server import live_daphne  # noqa: F401  (the fixture)
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, TIMEOUT_MS, USERNAME, Problems, browser_user, screenshot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOOL_RESULT = '#pyhub-chat-messages .pyhub-msg[data-role="tool"]'
AI_COMPLETE = '#pyhub-chat-messages .pyhub-msg[data-role="ai"][data-status="complete"]'


async def test_a_question_about_the_data_is_answered_with_a_table_and_a_chart(live_daphne: str, browser_user) -> None:  # noqa: F811
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = await (await browser.new_context(locale="en-US", viewport={"width": 1024, "height": 900})).new_page()
            page.set_default_timeout(TIMEOUT_MS)
            problems = Problems(page)
            await page.goto(f"{live_daphne}/accounts/login/")
            await page.locator("#id_username").fill(USERNAME)
            await page.locator("#id_password").fill(PASSWORD)
            await page.locator("form button[type=submit]").click()
            await page.locator("#data-room").click()
            await page.locator("#data-start").click()
            await expect(page.locator("#pyhub-chat-connection")).to_have_attribute("data-state", "open")

            chat_input = page.locator("#pyhub-chat-input")
            await chat_input.fill("Please describe the data")
            await chat_input.press("Enter")
            table = page.locator(f"{TOOL_RESULT} .pyhub-msg-artifact table")
            await expect(table).to_have_count(1, timeout=TIMEOUT_MS)
            await expect(table.locator("th").first).to_have_text("column")  # one row per column: its statistics
            await expect(table.locator("tbody tr")).to_have_count(6)
            await expect(table.locator("tbody tr").first.locator("td").first).to_have_text("date")
            await expect(page.locator(AI_COMPLETE).last).to_contain_text("20 rows")

            await chat_input.fill("Draw a chart of the data")
            await chat_input.press("Enter")
            image = page.locator(f"{TOOL_RESULT} .pyhub-msg-artifact img")
            await expect(image).to_have_count(1, timeout=TIMEOUT_MS)
            # Each turn: the step that called the tool, then the answer.
            await expect(page.locator(AI_COMPLETE)).to_have_count(4, timeout=TIMEOUT_MS)
            width = await image.evaluate("img => img.complete ? img.naturalWidth : new Promise(r => img.onload = () => r(img.naturalWidth))")
            assert width == 600  # the server-rendered 6 x 4 in chart at 100 dpi
            await screenshot(page, "data-room")
            assert not problems.items, f"The page reported problems:\n{problems}"
        finally:
            await browser.close()
