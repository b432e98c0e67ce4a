"""Thumbs with a comment on a reply, then the admin's filter by feedback, in a real browser.

Run with the browser suite (``pytest -m browser``). Screenshots: ``feedback-*.png``.
"""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from pyhub_ai.models import MessageFeedback

from .test_browser import PASSWORD, browser_user, screenshot  # noqa: F401
from .test_browser_branches import answer_to, say
from .test_browser_ux import browser, check, fast_server, open_page, open_room, room  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


async def test_a_thumbs_down_with_a_comment_is_kept_after_a_reload_and_found_by_the_admin_filter(
    fast_server, browser, room, django_user_model
) -> None:
    session, page = await open_room(browser, fast_server, room)
    await say(page, "Where is the station?")
    reply = answer_to(page, "Where is the station?")

    await reply.locator('.pyhub-msg-thumb[data-rating="down"]').click()
    await expect(reply.locator('.pyhub-msg-thumb[data-rating="down"]')).to_have_attribute("aria-pressed", "true")
    comment = reply.locator(".pyhub-msg-comment-input")
    await comment.fill("It never named the station.")
    await screenshot(page, "feedback-01-comment")
    await reply.locator(".pyhub-msg-comment-save").click()
    await expect(reply.locator(".pyhub-msg-comment")).to_have_text("Your comment: It never named the station.")

    await page.reload()
    reply = answer_to(page, "Where is the station?")
    await expect(reply.locator('.pyhub-msg-thumb[data-rating="down"]')).to_have_attribute("aria-pressed", "true")
    await expect(reply.locator('.pyhub-msg-thumb[data-rating="up"]')).to_have_attribute("aria-pressed", "false")
    await expect(reply.locator(".pyhub-msg-comment")).to_have_text("Your comment: It never named the station.")
    await screenshot(page, "feedback-02-after-reload")

    # Changing it: a thumbs up replaces the thumbs down (one feedback per reply), the comment stays.
    await reply.locator('.pyhub-msg-thumb[data-rating="up"]').click()
    await expect(reply.locator('.pyhub-msg-thumb[data-rating="up"]')).to_have_attribute("aria-pressed", "true")
    await reply.locator('.pyhub-msg-thumb[data-rating="down"]').click()
    await expect(reply.locator('.pyhub-msg-thumb[data-rating="down"]')).to_have_attribute("aria-pressed", "true")
    stored = await sync_to_async(lambda: [(f.rating, f.comment) for f in MessageFeedback.objects.all()])()
    assert stored == [(-1, "It never named the station.")]
    check(session)

    # The admin finds the conversation by its thumbs down.
    await sync_to_async(django_user_model.objects.create_superuser)(username="admin-user", password=PASSWORD)
    admin = await open_page(browser, viewport=(1280, 800))
    await admin.page.goto(f"{fast_server}/admin/login/")
    await admin.page.locator("#id_username").fill("admin-user")
    await admin.page.locator("#id_password").fill(PASSWORD)
    await admin.page.locator("input[type=submit]").click()
    await admin.page.goto(f"{fast_server}/admin/pyhub_ai/conversation/")
    await admin.page.locator("#changelist-filter").get_by_role("link", name="thumbs down").click()
    await expect(admin.page.locator("#result_list tbody tr")).to_have_count(1)
    await screenshot(admin.page, "feedback-03-admin-filter")
    await admin.page.locator("#changelist-filter").get_by_role("link", name="thumbs up").click()
    await expect(admin.page.locator("#result_list tbody tr")).to_have_count(0)
    check(admin)
