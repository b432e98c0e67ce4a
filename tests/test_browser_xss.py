"""Hostile model output and user input never execute in the chat page or the admin.

A live daphne serves the demo with ``OPENAI_BASE_URL`` pointing at the fake OpenAI server of
tests/fake_openai.py (started in this test process), which answers with script tags, event
handler attributes, ``javascript:`` links (in several spellings), HTML inside Markdown and
inside code blocks. The user sends HTML too (it becomes the conversation's title). Headless
Chromium then checks, on the chat page while streaming and after a reload, on the room list
and on the admin pages of the conversation, that nothing ran (``window.__xss`` stays
undefined), that no such element or attribute exists, that no ``javascript:`` link exists,
and that the hostile text is still shown, as text. A ``https:`` link in the same reply does
become a link: Markdown is rendered, not just dumped as text.
"""
from __future__ import annotations

import pytest
from playwright.async_api import Page, async_playwright, expect

from example.models import LLMChatRoom
from tests.fake_openai import FakeOpenAI
from tests.live_server import run_daphne
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, Problems, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ADMIN_USERNAME = "xss-admin"
ADMIN_PASSWORD = "xss-admin-pass-123"

# The room's first turn (the consumer starts it) is answered with this.
HOSTILE_REPLY = """\
<script>window.__xss=1</script>

<img src=x onerror="window.__xss=2">

[click](javascript:window.__xss=3)

[x](JaVaScRiPt:window.__xss=4)

**<svg onload=window.__xss=5>**

<iframe srcdoc="<script>parent.__xss=6</script>"></iframe>

[entity](&#106;avascript:window.__xss=12)

<a href="javascript:window.__xss=13">raw link</a>

[data](data:text/html,<script>window.__xss=16</script>)

[safe link](https://example.com/safe)"""

# The user's turn is answered with hostile code blocks, a quote and a list.
HOSTILE_CODE_REPLY = """\
```html
<script>window.__xss=9</script><img src=x onerror="window.__xss=10">
```

```js
document.write("</code></pre><img src=x onerror=window.__xss=11>")
```

> <img src=x onerror=window.__xss=14>

- <svg><script>window.__xss=15</script></svg>"""

HOSTILE_USER_MESSAGE = "<img src=x onerror=window.__xss=7> <script>window.__xss=8</script>"

# What must still be readable, as text.
VISIBLE_TEXT = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=2">',
    "[click](javascript:window.__xss=3)",
    "[x](JaVaScRiPt:window.__xss=4)",
    "<svg onload=window.__xss=5>",
    '<iframe srcdoc="<script>parent.__xss=6</script>"></iframe>',
    '<a href="javascript:window.__xss=13">raw link</a>',
    "<script>window.__xss=9</script>",
    "</code></pre><img src=x onerror=window.__xss=11>",
    "<img src=x onerror=window.__xss=14>",
    "<svg><script>window.__xss=15</script></svg>",
]

# Elements and attributes none of which may exist inside a rendered message.
HOSTILE_SELECTOR = "script, img, svg, iframe, object, embed, frame, form, input, link, meta, style, base"


async def assert_nothing_ran(page: Page, where: str, container: str | None = None) -> None:
    """Nothing of the payloads ran or became markup anywhere in the page; inside ``container``
    (where messages are rendered) no active element, handler attribute or unsafe link at all."""
    assert await page.evaluate("typeof window.__xss") == "undefined", f"{where}: injected code ran"
    injected = await page.evaluate(
        """() => [...document.querySelectorAll('*')].filter(el =>
               [...el.attributes].some(a => a.value.includes('__xss'))
               || (/^(SCRIPT|STYLE|IFRAME|SVG|IMG|OBJECT|EMBED)$/i.test(el.tagName) && el.outerHTML.includes('__xss'))
           ).map(el => el.outerHTML.slice(0, 120))"""
    )
    assert injected == [], f"{where}: payload markup in the page: {injected}"
    javascript_links = await page.evaluate(
        "[...document.querySelectorAll('a[href], area[href]')].filter(a => /^(javascript|data|vbscript):$/i.test(a.protocol)).length"
    )
    assert javascript_links == 0, f"{where}: {javascript_links} javascript:/data: link(s) in the page"
    if container is None:
        return
    hostile = await page.locator(f"{container} :is({HOSTILE_SELECTOR})").count()
    assert hostile == 0, f"{where}: {hostile} active element(s) inside {container}"
    handlers = await page.locator(container).evaluate_all(
        """roots => roots.flatMap(root => [...root.querySelectorAll('*')].flatMap(el =>
            [...el.attributes].filter(a => /^on/i.test(a.name) || a.name === 'srcdoc').map(a => el.tagName + ' ' + a.name)))"""
    )
    assert handlers == [], f"{where}: event handler attributes {handlers}"
    hrefs = await page.locator(f"{container} a[href]").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    unsafe = [href for href in hrefs if not href.lower().startswith(("https://", "http://", "mailto:", "/"))]
    assert unsafe == [], f"{where}: unsafe links {unsafe}"


async def assert_readable(page: Page, container: str, texts: list[str], where: str) -> None:
    shown = "\n".join(await page.locator(container).all_inner_texts())
    missing = [text for text in texts if text not in shown]
    assert missing == [], f"{where}: not shown as text: {missing}\n---\n{shown}"


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(username=ADMIN_USERNAME, password=ADMIN_PASSWORD, email="")


async def test_hostile_model_output_and_user_input_never_execute(admin_user) -> None:
    room = await LLMChatRoom.objects.acreate()
    with FakeOpenAI(reply="(no more replies)", chunk_delay=0.002) as provider:
        provider.answer_with(HOSTILE_REPLY, HOSTILE_CODE_REPLY)
        env = {"OPENAI_API_KEY": "sk-test-browser", "OPENAI_BASE_URL": provider.base_url}
        with run_daphne("daphne-browser-xss", extra_env=env) as (base_url, log_path):
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                try:
                    context = await browser.new_context(locale="en-US", viewport={"width": 1024, "height": 900})
                    page = await context.new_page()
                    page.set_default_timeout(TIMEOUT_MS)
                    problems = Problems(page)
                    dialogs: list[str] = []
                    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
                    try:
                        await run_scenario(page, base_url, room)
                    except Exception as exc:
                        await screenshot(page, "xss-failure")
                        raise AssertionError(f"{exc}\n\nIn the page:\n{problems}\n\ndaphne log: {log_path}") from exc
                    assert dialogs == []
                finally:
                    await browser.close()
        # Both replies came from the fake provider (so the page showed its output).
        assert len(provider.completions()) == 2


async def run_scenario(page: Page, base_url: str, room: LLMChatRoom) -> None:
    await page.goto(f"{base_url}/accounts/login/")
    await page.locator("#id_username").fill(ADMIN_USERNAME)
    await page.locator("#id_password").fill(ADMIN_PASSWORD)
    await page.locator("form button[type=submit]").click()
    await page.wait_for_url(f"{base_url}/example/**")

    # The chat page: the room's first reply streams in, hostile.
    messages = "#pyhub-chat-messages"
    ai_complete = f'{messages} .pyhub-msg[data-role="ai"][data-status="complete"]'
    await page.goto(f"{base_url}/example/chat/{room.pk}/")
    await expect(page.locator(ai_complete)).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(page.locator(f'{ai_complete} a[href="https://example.com/safe"]')).to_have_count(1)
    await assert_nothing_ran(page, "chat page, first reply", messages)

    # The user sends HTML; the reply is hostile code blocks.
    await page.locator("#pyhub-chat-input").fill(HOSTILE_USER_MESSAGE)
    await page.locator("#pyhub-chat-input").press("Enter")
    await expect(page.locator(ai_complete)).to_have_count(2, timeout=TIMEOUT_MS)
    await expect(page.locator(f'{messages} .pyhub-msg[data-role="human"]')).to_contain_text(HOSTILE_USER_MESSAGE)
    await screenshot(page, "xss-chat")
    await assert_nothing_ran(page, "chat page, after the user's turn", messages)
    await assert_readable(page, messages, [*VISIBLE_TEXT, HOSTILE_USER_MESSAGE], "chat page")

    # After a reload the same messages come from the history frame (another rendering path).
    await page.reload()
    await expect(page.locator(ai_complete)).to_have_count(2, timeout=TIMEOUT_MS)
    await assert_nothing_ran(page, "chat page, after a reload", messages)
    await assert_readable(page, messages, [*VISIBLE_TEXT, HOSTILE_USER_MESSAGE], "chat page, after a reload")

    # The room list, and the chat page's sidebar that names the conversation after the user's first message.
    await page.goto(f"{base_url}/example/")
    await assert_nothing_ran(page, "room list")
    await page.goto(f"{base_url}/example/chat/{room.pk}/")
    await assert_nothing_ran(page, "chat page sidebar", ".room-conversations")
    await assert_readable(page, ".room-conversations", ["<img src=x onerror=window.__xss=7> <script>"], "chat page sidebar")  # a shortened title

    # The admin shows the whole thread, Markdown rendered by admin.js.
    await page.goto(f"{base_url}/admin/pyhub_ai/conversation/{room.conversation_id}/change/")
    thread = ".pyhub-admin-messages"
    await expect(page.locator(f'{thread} a[href="https://example.com/safe"]')).to_have_count(1, timeout=TIMEOUT_MS)
    await screenshot(page, "xss-admin-conversation")
    await assert_nothing_ran(page, "admin conversation page", thread)
    await assert_readable(page, thread, [*VISIBLE_TEXT, HOSTILE_USER_MESSAGE], "admin conversation page")

    # Each message's own admin page (its text, and its stored JSON in a form field).
    ids = await page.locator(f"{thread} .pyhub-admin-msg").evaluate_all("items => items.map(li => li.id.replace('message-', ''))")
    assert len(ids) >= 4
    stored_with_payload = 0
    for message_id in ids:
        await page.goto(f"{base_url}/admin/pyhub_ai/conversationmessage/{message_id}/change/")
        await expect(page.locator(".field-rendered .readonly")).to_have_count(1)
        await assert_nothing_ran(page, f"admin message #{message_id}", ".field-rendered .readonly")
        # The stored JSON is in a textarea: text, not markup.
        stored_with_payload += "__xss" in await page.locator("textarea[name=content]").input_value()
    assert stored_with_payload == 3  # both replies and the user's message
    await page.goto(f"{base_url}/admin/pyhub_ai/conversationmessage/")
    await assert_nothing_ran(page, "admin message list", "#result_list .field-excerpt")
    await assert_readable(page, "#result_list", ["<script>window.__xss=1</script>"], "admin message list")
