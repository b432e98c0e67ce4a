"""The ready-made pages (``pyhub_ai.urls``) in headless Chromium against a live daphne: a page
that cannot load its script or reach its websocket says so, and the pages fit a phone."""
from __future__ import annotations

import pytest
from playwright.async_api import Page, async_playwright, expect

from pyhub_ai.models import Conversation
from tests.live_server import live_daphne  # noqa: F401  (the fixture)
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, TIMEOUT_MS, USERNAME, browser_user, screenshot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


async def signed_in_page(playwright, base_url: str, *, viewport: dict, locale: str = "en-US") -> Page:
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    page = await (await browser.new_context(locale=locale, viewport=viewport)).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(f"{base_url}/accounts/login/")
    await page.locator("#id_username").fill(USERNAME)
    await page.locator("#id_password").fill(PASSWORD)
    await page.locator("form button[type=submit]").click()
    await page.wait_for_load_state()
    return page


async def test_a_page_whose_script_does_not_load_says_so(live_daphne: str, browser_user) -> None:  # noqa: F811
    conversation = await Conversation.objects.acreate(user=browser_user)
    async with async_playwright() as playwright:
        page = await signed_in_page(playwright, live_daphne, viewport={"width": 1024, "height": 700})
        await page.route("**/static/pyhub_ai/chat.js", lambda route: route.fulfill(status=404, body="missing"))
        await page.goto(f"{live_daphne}/chat/{conversation.pk}/")
        state = page.locator("#pyhub-chat-connection")
        await expect(state).to_contain_text("could not load its script")
        await expect(state).to_have_attribute("data-state", "refused")
        await screenshot(page, "pages-no-script")


async def test_a_page_whose_websocket_never_connects_says_so(live_daphne: str, browser_user) -> None:  # noqa: F811
    conversation = await Conversation.objects.acreate(user=browser_user)
    async with async_playwright() as playwright:
        page = await signed_in_page(playwright, live_daphne, viewport={"width": 1024, "height": 700})
        # As if nothing served websockets at this address: every attempt is closed unopened.
        await page.route_web_socket("**/ws/**", lambda ws: ws.close(code=1006))
        await page.goto(f"{live_daphne}/chat/{conversation.pk}/")
        await expect(page.locator("#pyhub-chat-error")).to_contain_text("cannot be reached")
        await expect(page.locator("#pyhub-chat-connection")).to_contain_text("cannot be reached")
        await screenshot(page, "pages-unreachable")


async def test_the_pages_fit_a_phone_in_korean(live_daphne: str, browser_user) -> None:  # noqa: F811
    conversation = await Conversation.objects.acreate(user=browser_user, title="주말 여행 계획")
    async with async_playwright() as playwright:
        page = await signed_in_page(playwright, live_daphne, viewport={"width": 390, "height": 844}, locale="ko-KR")
        await page.goto(f"{live_daphne}/chat/")
        await expect(page.locator("h1")).to_have_text("내 대화")
        await expect(page.locator(".pyhub-conversation-title")).to_have_text("주말 여행 계획")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await screenshot(page, "pages-list-phone-ko")

        await page.locator(".pyhub-conversation-link").click()
        await expect(page.locator("#pyhub-chat-connection")).to_have_attribute("data-state", "open")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        header = await page.locator(".pyhub-page-header").bounding_box()
        assert header["height"] <= 80, header  # at most two rows on a phone
        await expect(page.locator("#pyhub-chat-input")).to_be_in_viewport()
        await screenshot(page, "pages-chat-phone-ko")
