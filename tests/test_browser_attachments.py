"""Attaching an image to a message in a real browser, and seeing it again after a reload.

Run with the browser suite (``pytest -m browser``). Screenshots: ``attachments-*.png``.
"""
from __future__ import annotations

import pytest
from playwright.async_api import expect

import struct
import zlib

from .test_browser import HUMAN, browser_user, screenshot  # noqa: F401
from .test_browser_ux import (  # noqa: F401  (fixtures)
    COMPLETE,
    REPLY_TIMEOUT_MS,
    browser,
    check,
    fast_server,
    open_room,
    room,
    sent_frames,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def square_png(size: int = 96) -> bytes:
    """A ``size`` x ``size`` PNG: an orange square on teal (big enough to see in a screenshot)."""
    rows = b"".join(
        b"\0" + b"".join(b"\xf0\x90\x20" if size // 4 <= x < 3 * size // 4 and size // 4 <= y < 3 * size // 4 else b"\x10\x80\x90" for x in range(size))
        for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def test_an_attached_image_is_sent_answered_and_shown_again_after_a_reload(fast_server, browser, room) -> None:
    session, page = await open_room(browser, fast_server, room)

    await expect(page.locator("#pyhub-chat-attach")).to_be_visible()
    await page.locator("#pyhub-chat-file").set_input_files([
        {"name": "square.png", "mimeType": "image/png", "buffer": square_png()},
        {"name": "sales.csv", "mimeType": "text/csv", "buffer": b"month,units\nJan,3\n"},
    ])
    chips = page.locator("#pyhub-chat-files .pyhub-chat-file-chip")
    await expect(chips.and_(page.locator("[data-ready]"))).to_have_count(2)
    await page.locator("#pyhub-chat-input").fill("What do you see?")
    await screenshot(page, "attachments-01-chosen")
    await page.locator("#pyhub-chat-input").press("Enter")

    answer = page.locator(COMPLETE).filter(has_text="I received your files: square.png, sales.csv.")
    await expect(answer).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    await expect(chips).to_have_count(0)
    [frame] = await sent_frames(page, "user_message")
    assert len(frame["attachments"]) == 2

    await page.reload()
    thumbnail = page.locator(HUMAN + " .pyhub-msg-files img")
    await expect(thumbnail).to_have_attribute("alt", "square.png")
    assert await thumbnail.evaluate("img => img.complete ? img.naturalWidth : new Promise(r => img.onload = () => r(img.naturalWidth))") == 96
    await expect(page.locator(HUMAN + " .pyhub-msg-files a").nth(1)).to_have_text("sales.csv")
    await screenshot(page, "attachments-02-after-reload")
    check(session)


async def test_a_file_of_another_type_is_refused_with_a_message(fast_server, browser, room) -> None:
    session, page = await open_room(browser, fast_server, room)

    await page.locator("#pyhub-chat-file").set_input_files([{"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ\x90\x00"}])

    await expect(page.locator("#pyhub-chat-error")).to_contain_text("tool.exe could not be attached: Only images")
    await expect(page.locator("#pyhub-chat-files .pyhub-chat-file-chip")).to_have_count(0)
    check(session, allow=("HTTP 400",))
