"""A tool call that needs the user's approval, answered after the server restarted, in a real browser.

Run with the browser suite (``pytest -m browser``). The room is ``tests.tools_asgi``'s
``/ws/approval/`` consumer: a ``create_agent`` graph whose ``get_weather`` tool waits for an
approval (``HumanInTheLoopMiddleware``). Screenshots: ``approval-*.png``.
"""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import Page, expect

from pyhub_ai.models import Conversation, ConversationMessage

from .live_server import free_port, run_daphne
from .test_browser import PASSWORD, browser_user, screenshot  # noqa: F401  (browser_user is a fixture)
from .test_browser_ux import COMPLETE, REPLY_TIMEOUT_MS, TIMEOUT_MS, browser, check, open_page, room, server_env, sign_in  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

APPLICATION = "tests.tools_asgi:application"
APPROVAL = "#pyhub-chat-messages .pyhub-approval"


async def connect_to_approval_room(page: Page, base_url: str, room, conversation) -> None:
    """The demo's chat page, connected to the approval consumer's conversation instead."""
    await page.goto(f"{base_url}/example/chat/{room.pk}/")
    await page.evaluate(
        f"""() => {{
          document.getElementById("pyhub-chat").dataset.wsUrl = "/ws/approval/{conversation.pk}/";
          window.PyhubChat.connect();
        }}"""
    )
    await expect(page.locator("#pyhub-chat-connection")).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)


def stored_rows(conversation) -> list[tuple[str, str, str, str]]:
    return [
        (row.role, row.status, row.message.content, str(row.turn_id))
        for row in ConversationMessage.objects.filter(conversation=conversation).order_by("pk")
    ]


async def test_approve_after_a_server_restart_resumes_the_turn_and_shows_the_result(request, transactional_db, browser, room, browser_user) -> None:
    conversation = await sync_to_async(Conversation.objects.create)(user=browser_user)
    port = free_port()
    session = await open_page(browser)
    page = session.page
    connection = page.locator("#pyhub-chat-connection")

    with run_daphne(f"daphne-{request.node.name}-1", application=APPLICATION, extra_env=server_env(), port=port) as (base_url, _):
        await sign_in(page, base_url)
        await connect_to_approval_room(page, base_url, room, conversation)
        await page.locator("#pyhub-chat-input").fill("What is the weather in Seoul?")
        await page.locator("#pyhub-chat-input").press("Enter")

        approval = page.locator(APPROVAL)
        await expect(approval).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
        await expect(approval.locator(".pyhub-approval-name")).to_have_text("The assistant wants to run get_weather")
        await expect(approval.locator(".pyhub-approval-args")).to_contain_text('"city": "Seoul"')
        await expect(page.locator(".pyhub-msg-tool-call")).to_contain_text("Tool call: get_weather")
        await expect(page.locator("#pyhub-chat-send")).to_be_disabled()  # one thing at a time: the approval first
        await screenshot(page, "approval-01-request")

    # The server is gone; the pending tool call lives in the checkpoint, in the database.
    await expect(connection).to_have_attribute("data-state", "closed", timeout=TIMEOUT_MS)
    await expect(page.locator(APPROVAL)).to_have_count(0)

    with run_daphne(f"daphne-{request.node.name}-2", application=APPLICATION, extra_env=server_env(), port=port):
        await expect(connection).to_have_attribute("data-state", "open", timeout=REPLY_TIMEOUT_MS)
        approval = page.locator(APPROVAL)
        await expect(approval).to_have_count(1)  # sent again by the new server after the history
        await expect(approval.locator(".pyhub-approval-args")).to_contain_text('"city": "Seoul"')
        await screenshot(page, "approval-02-after-restart")

        await approval.locator(".pyhub-approval-approve").click()

        answer = page.locator(COMPLETE).filter(has_text="The weather tool said: sunny in Seoul")
        await expect(answer).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
        await expect(page.locator(APPROVAL)).to_have_count(0)
        await expect(page.locator(".pyhub-msg-tool summary")).to_have_text("Tool result: get_weather")
        await expect(page.locator("#pyhub-chat-send")).to_be_visible()
        await screenshot(page, "approval-03-approved")

        rows = await sync_to_async(stored_rows)(conversation)
        assert [(role, status) for role, status, _, _ in rows] == [("human", "complete"), ("ai", "complete"), ("tool", "complete"), ("ai", "complete")]
        assert rows[2][2] == "sunny in Seoul" and rows[3][2] == "The weather tool said: sunny in Seoul"
        assert len({turn for *_, turn in rows}) == 1  # one turn, resumed

        # The stored thread looks the same after a reload; nothing waits for an approval any more.
        await page.reload()
        await connect_to_approval_room(page, base_url_of(port), room, conversation)
        await expect(page.locator(COMPLETE).filter(has_text="The weather tool said: sunny in Seoul")).to_have_count(1)
        await expect(page.locator(APPROVAL)).to_have_count(0)
    check(session, allow=("ERR_CONNECTION_REFUSED", "WebSocket connection"))


async def test_edit_with_arguments_that_are_not_json_says_so_then_runs_the_edited_call(request, transactional_db, browser, room, browser_user) -> None:
    conversation = await sync_to_async(Conversation.objects.create)(user=browser_user)
    session = await open_page(browser, locale="ko-KR")
    page = session.page
    with run_daphne(f"daphne-{request.node.name}", application=APPLICATION, extra_env=server_env()) as (base_url, _):
        await sign_in(page, base_url)
        await connect_to_approval_room(page, base_url, room, conversation)
        await page.locator("#pyhub-chat-input").fill("서울 날씨 어때?")
        await page.locator("#pyhub-chat-input").press("Enter")
        approval = page.locator(APPROVAL)
        await expect(approval).to_have_count(1, timeout=REPLY_TIMEOUT_MS)

        await approval.locator(".pyhub-approval-edit").click()
        editor = approval.locator(".pyhub-approval-edit-input")
        await editor.fill('{"city": Busan}')
        await approval.locator(".pyhub-approval-edit-save").click()
        await expect(approval.locator(".pyhub-approval-error")).not_to_be_empty()
        await screenshot(page, "approval-04-edit-bad-json")
        await editor.fill('{"city": "Busan"}')
        await approval.locator(".pyhub-approval-edit-save").click()

        await expect(page.locator(COMPLETE).filter(has_text="sunny in Busan")).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
        await expect(page.locator(APPROVAL)).to_have_count(0)
        await screenshot(page, "approval-05-edited")
    check(session)


def base_url_of(port: int) -> str:
    return f"http://127.0.0.1:{port}"
