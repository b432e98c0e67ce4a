"""The chat experience in a real browser: headless Chromium against a live daphne server.

Run with the browser suite (``pytest -m browser``, as ``make test`` does). Each test signs in
like tests/test_browser.py; screenshots of the main states go to test-artifacts/screenshots/
(``ux-*.png``). Replies come from the offline model, slowed down where a test needs a reply
that is still streaming (``PYHUB_AI_OFFLINE_MODEL_DELAY`` in the server's environment).
"""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from langchain_core.messages import AIMessage, HumanMessage
from playwright.async_api import Page, async_playwright, expect

from example.models import LLMChatRoom
from pyhub_ai.models import ConversationMessage

from .live_server import free_port, run_daphne
from .test_browser import (  # noqa: F401  (browser_user is a fixture)
    CHROMIUM,
    CHROMIUM_ARGS,
    HUMAN,
    PASSWORD,
    TIMEOUT_MS,
    USERNAME,
    Problems,
    browser_user,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AI = '#pyhub-chat-messages .pyhub-msg[data-role="ai"]'
STREAMING = '#pyhub-chat-messages .pyhub-msg[data-role="ai"][data-status="streaming"]'
INTERRUPTED = '#pyhub-chat-messages .pyhub-msg[data-role="ai"][data-status="interrupted"]'
COMPLETE = '#pyhub-chat-messages .pyhub-msg[data-role="ai"][data-status="complete"]'
SLOW_REPLY_DELAY = "0.15"  # seconds per word: a reply of the offline model streams for ~5 s
HISTORY_PAGE_SIZE = 20
REPLY_TIMEOUT_MS = 20_000

# Records every frame the page sends (window.__sent) and keeps its sockets (window.__sockets).
# A test can make the connection drop just as a frame goes out (window.__dropOnSend = "user_message":
# the frame is lost) or just as one comes in (window.__dropOnReceive = "message": the server got
# the user's message, its echo is lost).
RECORD_FRAMES = """
(() => {
  const Native = window.WebSocket;
  window.__sent = [];
  window.__sockets = [];
  function typeOf(data) {
    try { return JSON.parse(data).type; } catch (e) { return null; }
  }
  function Recording(url, protocols) {
    const socket = protocols === undefined ? new Native(url) : new Native(url, protocols);
    let handler = null;
    Object.defineProperty(socket, "onmessage", {get: () => handler, set: (fn) => { handler = fn; }});
    socket.addEventListener("message", (event) => {
      if (window.__dropOnReceive && typeOf(event.data) === window.__dropOnReceive) {
        window.__dropOnReceive = null;
        socket.close();
        return;
      }
      if (handler) handler.call(socket, event);
    });
    window.__sockets.push(socket);
    return socket;
  }
  Recording.prototype = Native.prototype;
  Object.assign(Recording, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
  const send = Native.prototype.send;
  Native.prototype.send = function (data) {
    try { window.__sent.push(JSON.parse(data)); } catch (e) {}
    if (window.__dropOnSend && typeOf(data) === window.__dropOnSend) {
      window.__dropOnSend = null;
      this.close();
      return;
    }
    return send.call(this, data);
  };
  window.WebSocket = Recording;
})();
"""


# -- Servers, browser, rooms ------------------------------------------------------------------------


def server_env(delay: str = "0") -> dict[str, str]:
    return {"PYHUB_AI_OFFLINE_MODEL_DELAY": delay, "PYHUB_AI_HISTORY_PAGE_SIZE": str(HISTORY_PAGE_SIZE)}


@pytest.fixture
def fast_server(request, transactional_db) -> Iterator[str]:
    """A daphne server with instant replies and small history pages."""
    with run_daphne(f"daphne-{request.node.name}", extra_env=server_env()) as (url, _):
        yield url


@pytest.fixture
def slow_server(request, transactional_db) -> Iterator[str]:
    """A daphne server whose offline model streams slowly, so a reply can be stopped."""
    with run_daphne(f"daphne-{request.node.name}", extra_env=server_env(SLOW_REPLY_DELAY)) as (url, _):
        yield url


class Session:
    """One browser page, with what went wrong in it."""

    def __init__(self, page: Page, problems: Problems) -> None:
        self.page = page
        self.problems = problems


@pytest_asyncio.fixture
async def browser():
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(browser, *, locale: str = "en-US", viewport=(1024, 800), color_scheme: str = "light", **options) -> Session:
    context = await browser.new_context(
        locale=locale, viewport={"width": viewport[0], "height": viewport[1]}, color_scheme=color_scheme, **options
    )
    await context.add_init_script(RECORD_FRAMES)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return Session(page, Problems(page))


async def sign_in(page: Page, base_url: str) -> None:
    """The sign-in flow of tests/test_browser.py."""
    await page.goto(f"{base_url}/accounts/login/")
    await page.locator("#id_username").fill(USERNAME)
    await page.locator("#id_password").fill(PASSWORD)
    await page.locator("form button[type=submit]").click()
    await expect(page).to_have_url(f"{base_url}/example/", timeout=TIMEOUT_MS)


async def open_chat(page: Page, base_url: str, room: LLMChatRoom) -> None:
    await page.goto(f"{base_url}/example/chat/{room.pk}/")
    await expect(page.locator("#pyhub-chat-connection")).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)


async def open_room(browser, base_url: str, room: LLMChatRoom, **options) -> tuple[Session, Page]:
    """A new signed-in page showing ``room``'s chat, connected (``options``: see ``open_page``)."""
    session = await open_page(browser, **options)
    await sign_in(session.page, base_url)
    await open_chat(session.page, base_url, room)
    return session, session.page


@pytest.fixture
def room(browser_user) -> LLMChatRoom:
    """A room whose thread for the browser user already has a greeting (so no starter turn runs)."""
    room = LLMChatRoom.objects.create(created_by=browser_user)
    ConversationMessage.from_message(AIMessage("你好！欢迎光临。"), conversation=room.conversation, user=browser_user).save()
    return room


async def sent_frames(page: Page, frame_type: str) -> list[dict]:
    return [frame for frame in await page.evaluate("window.__sent") if frame.get("type") == frame_type]


def check(session: Session, *, allow: tuple[str, ...] = ()) -> None:
    problems = [item for item in session.problems.items if not any(text in item for text in allow)]
    assert not problems, "The page reported problems:\n" + "\n".join(problems)


# -- Send, stream, stop, retry ----------------------------------------------------------------------


async def test_a_streaming_reply_can_be_stopped_and_retried(slow_server, browser, room) -> None:
    session = await open_page(browser)
    page = session.page
    await sign_in(page, slow_server)
    await open_chat(page, slow_server, room)
    chat_input, send, stop = page.locator("#pyhub-chat-input"), page.locator("#pyhub-chat-send"), page.locator("#pyhub-chat-stop")

    await chat_input.fill("Tell me a long story")
    await chat_input.press("Enter")

    # While the reply streams: the typing indicator, and Stop in place of Send.
    await expect(page.locator(STREAMING)).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(page.locator(STREAMING + " .pyhub-typing")).to_be_visible()
    await expect(stop).to_be_visible()
    await expect(send).to_be_hidden()
    await expect(page.locator(STREAMING + " .pyhub-msg-body")).not_to_be_empty(timeout=TIMEOUT_MS)
    await screenshot(page, "ux-01-streaming")

    await stop.click()

    stopped = page.locator(INTERRUPTED)
    await expect(stopped).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(stopped).to_contain_text("This reply was interrupted.")
    await expect(stopped.locator(".pyhub-msg-retry")).to_have_text("Retry")
    await expect(send).to_be_visible()
    await expect(stop).to_be_hidden()
    await expect(chat_input).to_be_focused()
    assert [frame["type"] for frame in await page.evaluate("window.__sent")].count("stop") == 1
    await screenshot(page, "ux-02-stopped")

    # Retry answers the same question again (a regenerate): the question is not sent twice, and
    # the interrupted reply becomes version 1 of 2, without its Retry button.
    stopped_id = await stopped.get_attribute("data-id")
    await stopped.locator(".pyhub-msg-retry").click()
    retried = page.locator(COMPLETE).filter(has_text="You said: “Tell me a long story”")
    await expect(retried).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    await expect(page.locator(HUMAN)).to_have_count(1)
    await expect(page.locator(INTERRUPTED)).to_have_count(0)
    await expect(retried.locator(".pyhub-msg-version")).to_have_text("2 / 2")
    assert [m["text"] for m in await sent_frames(page, "user_message")] == ["Tell me a long story"]
    assert await sent_frames(page, "regenerate") == [{"type": "regenerate", "message_id": int(stopped_id)}]
    await screenshot(page, "ux-03-retried")

    # Keyboard only: Tab goes from the input to Send (or to Stop while streaming); Escape stops.
    await chat_input.fill("Another long story")
    await chat_input.focus()
    await page.keyboard.press("Tab")
    await expect(send).to_be_focused()
    await chat_input.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator(STREAMING + " .pyhub-msg-body")).not_to_be_empty(timeout=TIMEOUT_MS)
    await page.keyboard.press("Tab")
    await expect(stop).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.locator(INTERRUPTED)).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(chat_input).to_be_focused()

    # The page after a reload: the same messages, as stored.
    await page.reload()
    await expect(page.locator("#pyhub-chat-connection")).to_have_attribute("data-state", "open")
    await expect(page.locator(HUMAN)).to_have_count(2)
    await expect(page.locator(INTERRUPTED)).to_have_count(1)  # the retried one is an older version now
    await expect(page.locator(INTERRUPTED + " .pyhub-msg-retry")).to_have_count(1)
    await expect(page.locator(COMPLETE).filter(has_text="Tell me a long story").locator(".pyhub-msg-version")).to_have_text("2 / 2")
    # Its older version keeps no Retry: it was answered again.
    await page.locator(COMPLETE).filter(has_text="Tell me a long story").locator(".pyhub-msg-version-prev").click()
    await expect(page.locator(INTERRUPTED).first.locator(".pyhub-msg-version")).to_have_text("1 / 2")
    await expect(page.locator(INTERRUPTED).first.locator(".pyhub-msg-retry")).to_have_count(0)
    check(session)


async def test_scrolling_up_during_a_reply_is_not_undone_and_jump_to_latest_returns(slow_server, browser, room) -> None:
    session = await open_page(browser, viewport=(1024, 600))
    page = session.page
    await sign_in(page, slow_server)
    await open_chat(page, slow_server, room)
    scroller, jump = page.locator("#pyhub-chat-scroll"), page.locator("#pyhub-chat-jump")

    long_message = "\n".join(f"Line {i} of a long message" for i in range(1, 31))
    await page.locator("#pyhub-chat-input").fill(long_message)
    await page.locator("#pyhub-chat-input").press("Enter")
    await expect(page.locator(STREAMING + " .pyhub-msg-body")).not_to_be_empty(timeout=TIMEOUT_MS)
    await expect(jump).to_be_hidden()

    await scroller.hover()
    await page.mouse.wheel(0, -400)
    await expect(jump).to_be_visible()
    position = await scroller.evaluate("el => el.scrollTop")
    await page.wait_for_timeout(1000)  # the reply goes on streaming meanwhile
    assert await scroller.evaluate("el => el.scrollTop") == position
    await expect(jump).to_have_attribute("data-unread", "true")
    await screenshot(page, "ux-04-scrolled-up-while-streaming")

    await jump.click()
    await expect(jump).to_be_hidden()
    assert await scroller.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 5
    await expect(page.locator(COMPLETE).filter(has_text="Line 1 of a long message")).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    assert await scroller.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 5  # followed to the end
    check(session)


# -- The message input -------------------------------------------------------------------------------


async def test_enter_sends_shift_enter_adds_a_line_and_ime_composition_never_sends(fast_server, browser, room) -> None:
    session = await open_page(browser)
    page = session.page
    await sign_in(page, fast_server)
    await open_chat(page, fast_server, room)
    chat_input = page.locator("#pyhub-chat-input")

    await chat_input.fill("first line")
    await chat_input.press("Shift+Enter")
    await chat_input.press_sequentially("second line")
    await expect(chat_input).to_have_value("first line\nsecond line")
    assert await sent_frames(page, "user_message") == []

    # Composing Korean with an IME: the Enter that picks a candidate belongs to the IME.
    await chat_input.fill("안녕하")
    await chat_input.evaluate(
        """input => {
          input.dispatchEvent(new CompositionEvent("compositionstart", {data: ""}));
          input.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", isComposing: true, bubbles: true, cancelable: true}));
          input.value = "안녕하세요";
          input.dispatchEvent(new CompositionEvent("compositionend", {data: "세요"}));
          // Safari sends the Enter that ended the composition after compositionend, not composing.
          input.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", isComposing: false, bubbles: true, cancelable: true}));
        }"""
    )
    await page.wait_for_timeout(300)
    assert await sent_frames(page, "user_message") == []
    await expect(page.locator(HUMAN)).to_have_count(0)
    await expect(chat_input).to_have_value("안녕하세요")

    # After the composition, Enter sends (and Shift+Enter's line break is kept).
    await chat_input.fill("first line\nsecond line")
    await chat_input.press("Enter")
    await expect(page.locator(HUMAN)).to_have_count(1)
    assert await page.locator(HUMAN + " .pyhub-msg-body").inner_text() == "first line\nsecond line"
    await expect(chat_input).to_have_value("")
    await expect(page.locator(COMPLETE).filter(has_text="You said:")).to_have_count(1)
    assert [m["text"] for m in await sent_frames(page, "user_message")] == ["first line\nsecond line"]
    check(session)


# -- Long histories -----------------------------------------------------------------------------------


@pytest.fixture
def long_room(browser_user) -> LLMChatRoom:
    """A room where the browser user's thread has 120 messages ("Message 1" ... "Message 120")."""
    room = LLMChatRoom.objects.create(created_by=browser_user)
    ConversationMessage.objects.bulk_create(
        ConversationMessage.from_message(
            HumanMessage(f"Message {i}") if i % 2 else AIMessage(f"Message {i}"), conversation=room.conversation, user=browser_user
        )
        for i in range(1, 121)
    )
    return room


async def test_scrolling_up_loads_earlier_pages_in_order_without_moving_the_view(fast_server, browser, long_room) -> None:
    session = await open_page(browser)
    page = session.page
    await sign_in(page, fast_server)
    await open_chat(page, fast_server, long_room)
    messages, scroller = page.locator("#pyhub-chat-messages .pyhub-msg"), page.locator("#pyhub-chat-scroll")

    await expect(messages).to_have_count(HISTORY_PAGE_SIZE)
    await expect(messages.last).to_have_text(re.compile("Message 120"))
    assert await scroller.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 5  # opens at the end

    loaded = HISTORY_PAGE_SIZE
    while loaded < 120:
        oldest = messages.first
        oldest_id = await oldest.get_attribute("data-id")
        top_of = "el => el.getBoundingClientRect().top - el.closest('#pyhub-chat-scroll').getBoundingClientRect().top"
        await scroller.evaluate("el => el.scrollTo(0, 0)")
        await expect(messages).to_have_count(loaded + HISTORY_PAGE_SIZE)
        loaded += HISTORY_PAGE_SIZE
        # The message that was at the top is still where the reader saw it (the earlier page is
        # added above it; on the last page the "load earlier" button above it goes away).
        top = await page.locator(f'.pyhub-msg[data-id="{oldest_id}"]').evaluate(top_of)
        assert 0 <= top <= 80, top
        if loaded == 60:
            await screenshot(page, "ux-05-history-paged")

    await expect(page.locator("#pyhub-chat-load-more")).to_be_hidden()
    texts = await messages.evaluate_all("els => els.map(e => e.querySelector('.pyhub-msg-body').textContent)")
    assert texts == [f"Message {i}" for i in range(1, 121)]
    assert len(await sent_frames(page, "load_history")) == 5
    check(session)


# -- Connection ---------------------------------------------------------------------------------------


async def test_the_page_reconnects_after_the_server_restarts_and_resends_without_duplicates(request, transactional_db, browser, room) -> None:
    port = free_port()
    session = await open_page(browser)
    page = session.page
    with run_daphne(f"daphne-{request.node.name}-1", extra_env=server_env(), port=port) as (base_url, _):
        await sign_in(page, base_url)
        await open_chat(page, base_url, room)
    # The server is gone: the page says so and keeps trying.
    connection = page.locator("#pyhub-chat-connection")
    await expect(connection).to_have_attribute("data-state", "closed", timeout=TIMEOUT_MS)
    await expect(connection).to_have_text("Connection lost. Reconnecting…")
    await expect(page.locator("#pyhub-chat-send")).to_be_disabled()
    await screenshot(page, "ux-06-connection-lost")

    with run_daphne(f"daphne-{request.node.name}-2", extra_env=server_env(), port=port) as (base_url, _):
        await expect(connection).to_have_attribute("data-state", "open", timeout=REPLY_TIMEOUT_MS)
        await expect(connection).to_have_text("Connected")
        await expect(page.locator(AI)).to_have_count(1)  # the history is back

        # A message lost with the connection is sent again after the reconnect, with the same key.
        await page.evaluate('window.__dropOnSend = "user_message"')
        await page.locator("#pyhub-chat-input").fill("Are you still there?")
        await page.locator("#pyhub-chat-input").press("Enter")
        await expect(page.locator(COMPLETE).filter(has_text="You said: “Are you still there?”")).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
        await expect(page.locator(HUMAN)).to_have_count(1)
        frames = await sent_frames(page, "user_message")
        assert len(frames) == 2 and frames[0] == frames[1], frames

        # A message the server stored, whose echo was lost with the connection: the resend is
        # answered as a duplicate, so the page shows it once and no second reply starts.
        await page.evaluate('window.__dropOnReceive = "message"')
        await page.locator("#pyhub-chat-input").fill("Did you get this?")
        await page.locator("#pyhub-chat-input").press("Enter")
        human = page.locator(HUMAN).filter(has_text="Did you get this?")
        await expect(human).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
        await expect(page.locator("#pyhub-chat-send")).to_be_enabled(timeout=REPLY_TIMEOUT_MS)
        frames = await sent_frames(page, "user_message")
        assert len(frames) == 4 and frames[2] == frames[3] and frames[2]["idempotency_key"] != frames[0]["idempotency_key"], frames
        turn_id = await human.get_attribute("data-turn-id")
        await expect(page.locator(f'.pyhub-msg[data-role="ai"][data-turn-id="{turn_id}"]')).to_have_count(1)

        await page.reload()
        await expect(connection).to_have_attribute("data-state", "open")
        await expect(page.locator(HUMAN)).to_have_count(2)
        await screenshot(page, "ux-07-reconnected")
    stored = await sync_to_async(list)(ConversationMessage.objects.filter(role="human").values_list("content__data__content", flat=True))
    assert sorted(stored) == ["Are you still there?", "Did you get this?"]
    check(session, allow=("WebSocket connection to", "ERR_CONNECTION_REFUSED", "request failed"))


# -- Code blocks, dark mode, phones, Korean --------------------------------------------------------------

CODE_REPLY = """Here are two examples:

```python
def greet(name):  # say hello
    return f"Hello, {name}!" * 2
```

```sql
SELECT name, COUNT(*) FROM users WHERE age > 18 -- adults
```

And `inline code` too."""


@pytest.fixture
def code_room(browser_user) -> LLMChatRoom:
    room = LLMChatRoom.objects.create(created_by=browser_user, title="Code samples")
    ConversationMessage.from_message(HumanMessage("Show me some code <b>please</b>"), conversation=room.conversation, user=browser_user).save()
    ConversationMessage.from_message(AIMessage(CODE_REPLY), conversation=room.conversation, user=browser_user).save()
    return room


async def test_code_blocks_are_highlighted_and_copied_in_dark_mode(fast_server, browser, code_room) -> None:
    session = await open_page(browser, color_scheme="dark", permissions=["clipboard-read", "clipboard-write"])
    page = session.page
    await sign_in(page, fast_server)
    await open_chat(page, fast_server, code_room)

    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 18, 23)", background
    blocks = page.locator(".pyhub-code")
    await expect(blocks).to_have_count(2)
    await expect(blocks.nth(0).locator(".pyhub-code-lang")).to_have_text("python")
    python = blocks.nth(0).locator("code")
    await expect(python.locator(".pyhub-tok-k").first).to_have_text("def")
    await expect(python.locator(".pyhub-tok-c")).to_have_text("# say hello")
    await expect(python.locator(".pyhub-tok-s")).to_have_text('f"Hello, {name}!"')
    await expect(python.locator(".pyhub-tok-n")).to_have_text("2")
    await expect(blocks.nth(1).locator(".pyhub-tok-k").first).to_have_text("SELECT")
    await expect(blocks.nth(1).locator(".pyhub-tok-c")).to_have_text("-- adults")
    keyword_color = await python.locator(".pyhub-tok-k").first.evaluate("el => getComputedStyle(el).color")
    assert keyword_color == "rgb(210, 168, 255)", keyword_color
    # The user's HTML is text, never markup.
    await expect(page.locator(HUMAN + " b")).to_have_count(0)
    await expect(page.locator(HUMAN)).to_contain_text("<b>please</b>")

    copy = blocks.nth(0).locator(".pyhub-code-copy")
    await copy.click()
    await expect(copy).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == 'def greet(name):  # say hello\n    return f"Hello, {name}!" * 2'
    await screenshot(page, "ux-08-dark-code")
    await expect(copy).to_have_text("Copy", timeout=5000)
    check(session)


async def test_the_chat_fits_a_phone_screen(fast_server, browser, code_room) -> None:
    session = await open_page(browser, viewport=(390, 844), is_mobile=True, has_touch=True)
    page = session.page
    await sign_in(page, fast_server)
    await open_chat(page, fast_server, code_room)

    await expect(page.locator("#room-conversations")).not_to_have_attribute("open", "")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways ({width}px)"
    send_box = await page.locator("#pyhub-chat-send").bounding_box()
    assert send_box and send_box["x"] + send_box["width"] <= 390
    await screenshot(page, "ux-09-phone")
    check(session)


async def test_the_page_speaks_korean_from_the_browser_language_or_the_selector(fast_server, browser, room) -> None:
    session = await open_page(browser, locale="ko-KR")
    page = session.page
    await sign_in(page, fast_server)
    await open_chat(page, fast_server, room)

    await expect(page.locator("html")).to_have_attribute("lang", "ko")
    await expect(page.locator("#pyhub-chat-input")).to_have_attribute("placeholder", "메시지를 입력하세요…")
    await expect(page.locator("#pyhub-chat-send")).to_have_text("보내기")
    await expect(page.locator("#pyhub-chat-connection")).to_have_text("연결됨")
    await expect(page.locator(".pyhub-chat-title")).to_have_text("중국어 · 스타벅스에서 커피를 주문하는 상황")
    await expect(page.locator(".pyhub-chat-subtitle")).to_have_text("초급 · 대화 1")  # the level, not the settings again
    await screenshot(page, "ux-10-korean")

    # An English browser switches with the selector in the header.
    english = await open_page(browser, locale="en-US")
    await sign_in(english.page, fast_server)
    await english.page.locator("#site-language").select_option("ko")  # submits on change
    await expect(english.page.locator("html")).to_have_attribute("lang", "ko")
    await expect(english.page.locator("h1")).to_have_text("채팅방")
    check(session)
    check(english)


# -- Rooms and conversations --------------------------------------------------------------------------------


async def test_a_room_is_created_with_its_settings_and_holds_several_conversations(fast_server, browser, browser_user) -> None:
    session = await open_page(browser)
    page = session.page
    await sign_in(page, fast_server)

    await page.locator("#new_room_title").fill("Tokyo trip")
    await page.locator("#new_room_language").select_option("ja")
    await page.locator("#new_room_situation").select_option("hotel")
    await page.locator("#new-room").click()
    await expect(page.locator(".pyhub-chat-title")).to_have_text("Tokyo trip")
    await expect(page.locator(".pyhub-chat-subtitle")).to_contain_text("Japanese · Checking in at a hotel · Beginner")
    await expect(page.locator(COMPLETE)).to_have_count(1)  # the tutor starts
    first_url = page.url

    await page.locator("#new-conversation").click()
    await expect(page).to_have_url(re.compile(r"/example/chat/\d+/conversations/\d+/$"))
    await expect(page.locator("#pyhub-chat-connection")).to_have_attribute("data-state", "open")
    await expect(page.locator(COMPLETE)).to_have_count(1)
    await page.locator("#pyhub-chat-input").fill("チェックインをお願いします")
    await page.locator("#pyhub-chat-input").press("Enter")
    await expect(page.locator(COMPLETE)).to_have_count(2)

    await page.reload()
    conversations = page.locator(".room-conversations a")
    await expect(conversations).to_have_count(2)
    await expect(conversations.nth(1)).to_have_attribute("aria-current", "page")
    await expect(conversations.nth(1)).to_contain_text("チェックインをお願いします")
    await screenshot(page, "ux-11-conversations")
    await conversations.nth(0).click()
    await expect(page).to_have_url(first_url)
    await expect(page.locator(HUMAN)).to_have_count(0)  # the other conversation's messages stay there
    check(session)


# -- The admin --------------------------------------------------------------------------------------------


@pytest.fixture
def admin_thread(django_user_model):
    from langchain_core.messages import ToolMessage

    from pyhub_ai.models import Conversation

    django_user_model.objects.create_superuser(username="admin-user", password=PASSWORD)
    conversation = Conversation.objects.create(title="Weather with tools")
    rows = [
        HumanMessage("What is the weather? <img src=x onerror=window.__xss=1>"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Seoul"}, "id": "call_1"}]),
        ToolMessage("Sunny, 21°C", tool_call_id="call_1", name="get_weather"),
        AIMessage("It is **sunny**:\n\n```json\n{\"temp\": 21}\n```\n<script>window.__xss=2</script>"),
    ]
    for message in rows:
        ConversationMessage.from_message(message, conversation=conversation).save()
    ConversationMessage.from_message(AIMessage("Half a rep"), conversation=conversation, status="error").save()
    return conversation


async def test_the_admin_shows_a_thread_like_the_chat_with_markdown_rendered_safely(fast_server, browser, admin_thread) -> None:
    session = await open_page(browser)
    page = session.page
    await page.goto(f"{fast_server}/admin/login/")
    await page.locator("#id_username").fill("admin-user")
    await page.locator("#id_password").fill(PASSWORD)
    await page.locator("input[type=submit]").click()
    await expect(page).to_have_url(f"{fast_server}/admin/")
    await page.wait_for_load_state("load")
    await page.goto(f"{fast_server}/admin/pyhub_ai/conversation/{admin_thread.pk}/change/")
    await page.wait_for_load_state("load")

    thread = page.locator(".pyhub-admin-thread")
    await expect(thread.locator(".pyhub-admin-msg")).to_have_count(5)
    await expect(thread.locator(".pyhub-admin-markdown strong")).to_have_text("sunny")
    await expect(thread.locator(".pyhub-admin-markdown .pyhub-tok-s")).to_have_text('"temp"')
    await expect(thread.locator(".pyhub-admin-markdown").filter(has_text="sunny")).to_contain_text("<script>window.__xss=2</script>")
    await expect(thread.locator(".pyhub-admin-tool-calls")).to_contain_text('get_weather({"city": "Seoul"})')
    await expect(thread.locator("details.pyhub-admin-tool summary")).to_have_text("Tool result: get_weather")
    await expect(thread.locator('.pyhub-admin-msg[data-status="error"] .pyhub-admin-status')).to_have_text("error")
    assert await page.evaluate("window.__xss") is None
    await expect(page.locator(".object-tools")).to_contain_text("Export JSON Lines")
    await thread.scroll_into_view_if_needed()
    await screenshot(page, "ux-12-admin-thread")
    check(session)


# -- Tools ----------------------------------------------------------------------------------------------------


@pytest.fixture
def tool_server(request, transactional_db) -> Iterator[str]:
    with run_daphne(f"daphne-{request.node.name}", application="tests.tools_asgi:application", extra_env=server_env()) as (url, _):
        yield url


async def test_a_reply_that_calls_a_tool_shows_the_call_the_result_and_the_answer(tool_server, browser, room, browser_user) -> None:
    from pyhub_ai.models import Conversation

    conversation = await sync_to_async(Conversation.objects.create)(user=browser_user)
    session = await open_page(browser)
    page = session.page
    await sign_in(page, tool_server)
    await page.goto(f"{tool_server}/example/chat/{room.pk}/")
    # The same page, connected to the consumer that has a tool.
    await page.evaluate(
        f"""() => {{
          document.getElementById("pyhub-chat").dataset.wsUrl = "/ws/tools/{conversation.pk}/";
          window.PyhubChat.connect();
        }}"""
    )
    await expect(page.locator("#pyhub-chat-connection")).to_have_attribute("data-state", "open")
    await expect(page.locator(AI)).to_have_count(0)

    await page.locator("#pyhub-chat-input").fill("Show me the sales table")
    await page.locator("#pyhub-chat-input").press("Enter")

    answer = page.locator(COMPLETE).filter(has_text="The tool “sales_table” answered:")
    await expect(answer).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    roles = await page.locator("#pyhub-chat-messages .pyhub-msg").evaluate_all("els => els.map(e => [e.dataset.role, e.dataset.status])")
    assert roles == [["human", "complete"], ["ai", "complete"], ["tool", "complete"], ["ai", "complete"]], roles
    await expect(page.locator(".pyhub-msg-tool-call")).to_contain_text("Tool call: sales_table")
    await expect(page.locator(".pyhub-msg-tool summary")).to_have_text("Tool result: sales_table")
    table = page.locator(".pyhub-msg-artifact table")
    await expect(table.locator("th")).to_have_text(["month", "sales"])
    await expect(table.locator("tbody tr")).to_have_count(3)
    await expect(table.locator("tbody tr").nth(2).locator("td").first).to_have_text("<b>March</b>")
    await expect(table.locator("caption")).to_have_text("Showing 3 of 12 rows.")
    await expect(page.locator(".pyhub-msg-artifact b")).to_have_count(0)
    await expect(page.locator("#pyhub-chat-send")).to_be_visible()
    await screenshot(page, "ux-13-tool-call")

    await page.reload()  # the stored thread looks the same
    await page.evaluate(
        f"""() => {{
          document.getElementById("pyhub-chat").dataset.wsUrl = "/ws/tools/{conversation.pk}/";
          window.PyhubChat.connect();
        }}"""
    )
    await expect(page.locator(".pyhub-msg-artifact table tbody tr")).to_have_count(3)
    check(session)
