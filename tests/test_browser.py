"""The demo in a real browser: headless Chromium against a live daphne server.

Run in its own pytest process (``pytest -m browser``, as ``make test`` does): the sync
pytest-playwright plugin would break the pytest-asyncio tests of the same run. Screenshots of each step go to test-artifacts/screenshots/.
"""
from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.live_server import ARTIFACTS, live_daphne  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
SCREENSHOTS = ARTIFACTS / "screenshots"

USERNAME = "browser-user"
PASSWORD = "browser-pass-123"
# The example consumer's llm_first_user_message_template: stored hidden, never on the page.
STARTER = "첫 문장으로 대화를 시작해주세요."

MESSAGES = "#pyhub-chat-messages .pyhub-msg"
HUMAN = '#pyhub-chat-messages .pyhub-msg[data-role="human"]'
AI = '#pyhub-chat-messages .pyhub-msg[data-role="ai"]'
AI_COMPLETE = '#pyhub-chat-messages .pyhub-msg[data-role="ai"][data-status="complete"]'


@pytest.fixture
def browser_user(django_user_model):
    return django_user_model.objects.create_user(username=USERNAME, password=PASSWORD)


class Problems:
    """What went wrong in the page (JS errors, failed requests), to explain a failed wait."""

    def __init__(self, page: Page) -> None:
        self.items: list[str] = []
        page.on("pageerror", lambda error: self.items.append(f"page error: {error}"))
        page.on("console", self._on_console)
        page.on("requestfailed", self._on_request_failed)
        page.on("response", self._on_response)

    def _on_console(self, message) -> None:
        # Chromium logs every 4xx response as a console error too: the response hook reports those.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.items.append(f"console error: {message.text}")

    def _on_request_failed(self, request) -> None:
        # ERR_ABORTED: the page navigated (a reload, a link) while the request was in flight.
        if "ERR_ABORTED" not in (request.failure or ""):
            self.items.append(f"request failed: {request.url} ({request.failure})")

    def _on_response(self, response) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.items.append(f"HTTP {response.status}: {response.url}")

    def __str__(self) -> str:
        return "\n".join(self.items) or "(no JS errors or failed requests)"


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def messages_snapshot(page: Page) -> list[tuple[str, str, str]]:
    """``(role, status, id)`` of every message on the page, in page order."""
    return [
        tuple(item)
        for item in await page.locator(MESSAGES).evaluate_all(
            "els => els.map(e => [e.dataset.role, e.dataset.status, e.dataset.id])"
        )
    ]


async def expect_connected(page: Page) -> None:
    await expect(page.locator("#pyhub-chat-connection")).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)


async def expect_starter_hidden(page: Page) -> None:
    await expect(page.locator(HUMAN).filter(has_text=STARTER)).to_have_count(0)
    body_text = await page.locator("body").inner_text()
    assert STARTER not in body_text, f"The hidden starter message is visible on the page:\n{body_text}"


async def test_sign_in_chat_and_reload(live_daphne: str, browser_user) -> None:  # noqa: F811
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = await browser.new_context(locale="en-US", viewport={"width": 1024, "height": 800})
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            problems = Problems(page)
            try:
                await run_scenario(page, live_daphne)
            except Exception as exc:
                await screenshot(page, "failure")
                raise AssertionError(f"{exc}\n\nIn the page:\n{problems}") from exc
            assert not problems.items, f"The page reported problems:\n{problems}"
        finally:
            await browser.close()


async def run_scenario(page: Page, base_url: str) -> None:
    # Sign in.
    await page.goto(f"{base_url}/accounts/login/")
    await page.locator("#id_username").fill(USERNAME)
    await page.locator("#id_password").fill(PASSWORD)
    await screenshot(page, "01-login")
    await page.locator("form button[type=submit]").click()
    await expect(page).to_have_url(f"{base_url}/example/", timeout=TIMEOUT_MS)
    await screenshot(page, "02-room-list")

    # A new room: the POST redirects to its chat page.
    await page.locator("#new-room").click()
    await expect(page).to_have_url(re.compile(re.escape(base_url) + r"/example/chat/\d+/$"), timeout=TIMEOUT_MS)
    chat_url = page.url
    await expect_connected(page)

    # The consumer starts the conversation itself: an AI reply, no human message shown.
    await expect(page.locator(AI_COMPLETE)).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(page.locator(HUMAN)).to_have_count(0)
    await expect_starter_hidden(page)
    await screenshot(page, "03-conversation-started")

    # The user's turn: Enter sends, the message is echoed, the reply streams and completes.
    chat_input = page.locator("#pyhub-chat-input")
    await chat_input.fill("Hello browser")
    await chat_input.press("Enter")
    await expect(page.locator(HUMAN)).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(page.locator(HUMAN)).to_contain_text("Hello browser")
    reply = page.locator(AI_COMPLETE).filter(has_text="You said: “Hello browser”")
    await expect(reply).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(reply.locator(".pyhub-msg-body")).to_contain_text("You said: “Hello browser”")
    await expect(page.locator(AI)).to_have_count(2)
    await expect(chat_input).to_have_value("")
    await screenshot(page, "04-reply")
    before_reload = await messages_snapshot(page)
    assert [(role, status) for role, status, _ in before_reload] == [
        ("ai", "complete"),
        ("human", "complete"),
        ("ai", "complete"),
    ], before_reload
    assert all(message_id for _, _, message_id in before_reload), before_reload
    await expect_starter_hidden(page)

    # After a reload the history shows the same messages (and still not the starter).
    await page.reload()
    assert page.url == chat_url
    await expect_connected(page)
    await expect(page.locator(MESSAGES)).to_have_count(len(before_reload), timeout=TIMEOUT_MS)
    assert await messages_snapshot(page) == before_reload
    await expect(page.locator(HUMAN)).to_contain_text("Hello browser")
    await expect(page.locator(AI_COMPLETE).filter(has_text="You said: “Hello browser”")).to_have_count(1)
    await expect_starter_hidden(page)
    await screenshot(page, "05-after-reload")

