"""Usage in headless Chromium against a live daphne: a real turn (the room's starter, answered by
the offline model) is in the ledger; the user sees their month on the conversation list; the
admin's usage page shows it per user and per day, with its chart, and exports it as CSV."""
from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.async_api import async_playwright, expect

from tests.live_server import live_daphne  # noqa: F401  (the fixture)
from tests.test_browser import AI_COMPLETE, CHROMIUM, CHROMIUM_ARGS, PASSWORD, TIMEOUT_MS, USERNAME, Problems, screenshot
from tests.test_browser_pages import signed_in_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_superuser(username=USERNAME, password=PASSWORD)


async def test_a_turns_usage_on_the_conversation_list_and_the_admins_usage_page(live_daphne: str, staff_user) -> None:  # noqa: F811
    async with async_playwright() as playwright:
        page = await signed_in_page(playwright, live_daphne, viewport={"width": 1280, "height": 900})
        problems = Problems(page)
        try:
            # A room of the demo: its consumer starts the conversation, one model call.
            await page.goto(f"{live_daphne}/example/")
            await page.locator("#new-room").click()
            await expect(page.locator(AI_COMPLETE)).to_have_count(1, timeout=TIMEOUT_MS)
            # The page told the server the browser's time zone (quota_exceeded says resets in it).
            zone = await page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
            assert {"pyhub_ai_timezone": zone}.items() <= {c["name"]: c["value"] for c in await page.context.cookies()}.items()

            await page.goto(f"{live_daphne}/chat/")
            usage = page.locator("#pyhub-usage")
            await expect(usage).to_have_text(re.compile(r"^Your usage in \w+ \d{4}: [1-9][\d,]* tokens\.$"))
            tokens = int(re.search(r": ([\d,]+) tokens", await usage.inner_text()).group(1).replace(",", ""))
            await screenshot(page, "usage-conversation-list")

            await page.goto(f"{live_daphne}/admin/pyhub_ai/usagerecord/")
            await page.get_by_role("link", name="Usage per user and day").click()
            await expect(page.locator("h1")).to_have_text("Usage")
            users = page.locator("#pyhub-ai-usage-users tbody tr")
            await expect(users).to_have_count(1)
            await expect(users.first.locator("td").nth(0)).to_have_text(USERNAME)
            await expect(users.first.locator("td").nth(1)).to_have_text("1")
            await expect(page.locator("#pyhub-ai-usage-days tbody tr")).to_have_count(1)
            bars = page.locator("#pyhub-ai-usage-chart rect.pyhub-ai-usage-bar")
            await expect(bars).to_have_count(30)
            heights = [float(await bars.nth(n).get_attribute("height")) for n in range(30)]
            assert heights[-1] > 0 and not any(heights[:-1]), heights  # today's bar only
            assert (await page.locator("#pyhub-ai-usage-chart").bounding_box())["width"] > 300
            await screenshot(page, "usage-admin-page")

            async with page.expect_download() as download_info:
                await page.locator("#pyhub-ai-usage-csv").click()
            download = await download_info.value
            rows = list(csv.DictReader(io.StringIO(open(await download.path(), encoding="utf-8").read())))
            assert [(row["user"], row["calls"]) for row in rows] == [(USERNAME, "1")]
            assert int(rows[0]["input_tokens"]) + int(rows[0]["output_tokens"]) == tokens
        except Exception as exc:
            await screenshot(page, "usage-failure")
            raise AssertionError(f"{exc}\n\nIn the page:\n{problems}") from exc
        assert not problems.items, f"The page reported problems:\n{problems}"
