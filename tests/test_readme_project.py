"""The README's "Add it to your project" section, followed literally in blank Django projects.

A wheel of this checkout goes into a fresh virtual environment (``pip install``, dependencies
from the registry); ``django-admin startproject mysite`` makes the project; the README's code
blocks, extracted from README.md (tests/readme_project.py), are applied; ``migrate`` runs; the
project is served by ``daphne mysite.asgi:application`` (not runserver); and headless Chromium
signs in, chats, reloads and opens the admin.

- ``test_readme_ready_made_pages``: only the ready-made pages (``include("pyhub_ai.urls")`` and
  ``pyhub_ai.routing``).
- ``test_readme_own_consumer_and_page``: the whole section, with the tutorial-style consumer,
  routing and view.
- ``test_langchain_only_project``: a WSGI project with only ``pyhub_ai`` installed: ``migrate``
  and ``check`` pass quietly, and a ``RunnableWithMessageHistory`` chain remembers, sync and async.
"""
from __future__ import annotations

import json
import re
import subprocess
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.live_server import ARTIFACTS, _accepts_connections, _stop, _tail, free_port
from tests.readme_project import LANGCHAIN_ONLY, OWN_CONSUMER, BlankProject, build_wheel, fresh_venv, readme_section, readme_steps
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, Problems, screenshot

pytestmark = pytest.mark.blank_project

USERNAME = "ada"
PASSWORD = "ada-pass-123-x"
HUMAN = '#pyhub-chat-messages .pyhub-msg[data-role="human"]'
AI_STREAMING = '#pyhub-chat-messages .pyhub-msg[data-role="ai"][data-status="streaming"]'
AI_COMPLETE = '#pyhub-chat-messages .pyhub-msg[data-role="ai"][data-status="complete"]'


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory, wheel) -> Path:
    """One fresh environment with the wheel installed, shared by this module's projects."""
    return fresh_venv(tmp_path_factory.mktemp("readme-venv"), wheel)


@contextmanager
def daphne(project: BlankProject, name: str) -> Iterator[str]:
    """``daphne mysite.asgi:application`` in the project, as the README runs it; yields its URL."""
    port = free_port()
    log_path = ARTIFACTS / f"readme-daphne-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(project.bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(port), "mysite.asgi:application"],
            cwd=project.directory, env=project.env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(200):
            if process.poll() is not None:
                raise AssertionError(f"daphne exited with {process.returncode}:\n{_tail(log_path)}")
            if _accepts_connections("127.0.0.1", port):
                break
            subprocess.run(["sleep", "0.1"])
        else:
            raise AssertionError(f"daphne did not start:\n{_tail(log_path)}")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)
    assert "Traceback" not in log_path.read_text(), _tail(log_path)


def set_up(tmp_path: Path, venv_bin: Path, *, skip: tuple[str, ...]) -> BlankProject:
    """A blank project with the README's steps applied (but those of the ``skip`` subsections)."""
    project = BlankProject(tmp_path / "project", venv_bin)
    for step in readme_steps():
        if step.subsection not in skip:
            project.apply(step)
    project.create_user(USERNAME, PASSWORD, staff=True)
    return project


async def in_chromium(name: str, scenario) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = await (await browser.new_context(locale="en-US", viewport={"width": 1024, "height": 800})).new_page()
            page.set_default_timeout(TIMEOUT_MS)
            problems = Problems(page)
            try:
                await scenario(page)
            except Exception as exc:
                await screenshot(page, f"{name}-failure")
                raise AssertionError(f"{exc}\n\nIn the page:\n{problems}") from exc
            unexpected = [item for item in problems.items if "HTTP 404" not in item or "/chat/" not in item]
            assert not unexpected, f"The page reported problems:\n{problems}"
        finally:
            await browser.close()


async def sign_in(page: Page, base_url: str, next_path: str) -> None:
    await page.goto(f"{base_url}{next_path}")
    await expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    await page.locator("#id_username").fill(USERNAME)
    await page.locator("#id_password").fill(PASSWORD)
    await page.locator("form button[type=submit]").click()
    await expect(page).to_have_url(f"{base_url}{next_path}")


async def chat_and_reload(page: Page, name: str, text: str, *, greeting: bool) -> None:
    """Send ``text``, watch the reply stream and complete, reload: the history is the same."""
    await expect(page.locator("#pyhub-chat-connection")).to_have_attribute("data-state", "open")
    # The chat page is styled: chat.css was served under daphne.
    assert await page.locator("#pyhub-chat-form").evaluate("el => getComputedStyle(el).display") == "block"
    assert await page.locator("#pyhub-chat-send").evaluate("el => getComputedStyle(el).borderRadius") != "0px"
    ai_before = 1 if greeting else 0
    await expect(page.locator(AI_COMPLETE)).to_have_count(ai_before)
    await page.locator("#pyhub-chat-input").fill(text)
    await page.locator("#pyhub-chat-input").press("Enter")
    await expect(page.locator(AI_STREAMING)).to_have_count(1)  # the offline model streams word by word
    reply = page.locator(AI_COMPLETE).filter(has_text=f"You said: “{text}”")
    await expect(reply).to_have_count(1)
    await screenshot(page, f"{name}-reply")
    await page.reload()
    await expect(page.locator("#pyhub-chat-connection")).to_have_attribute("data-state", "open")
    await expect(page.locator(HUMAN).filter(has_text=text)).to_have_count(1)
    await expect(page.locator(AI_COMPLETE)).to_have_count(ai_before + 1)


async def admin_shows(page: Page, base_url: str, text: str) -> None:
    """The staff user finds the conversation in the admin and reads the thread."""
    await page.goto(f"{base_url}/admin/pyhub_ai/conversation/")
    await page.locator("#result_list tbody tr th a").first.click()
    await expect(page.locator("body")).to_contain_text(text)
    await expect(page.locator("body")).to_contain_text(f"You said: “{text}”")


@pytest.mark.browser
async def test_readme_ready_made_pages(tmp_path, venv_bin) -> None:
    project = set_up(tmp_path, venv_bin, skip=(OWN_CONSUMER, LANGCHAIN_ONLY))
    text = "Hello from a blank project"

    async def scenario(page: Page) -> None:
        await sign_in(page, base_url, "/chat/")
        await expect(page.locator("h1")).to_contain_text("Your conversations")
        await page.locator("#pyhub-new-conversation").click()
        await expect(page).to_have_url(re.compile(r"/chat/\d+/$"))
        await chat_and_reload(page, "readme-ready-made", text, greeting=False)
        # A conversation that does not exist, or an id out of the database's range: a 404 page.
        for missing in ("/chat/999999/", "/chat/9223372036854775808/"):
            response = await page.goto(f"{base_url}{missing}")
            assert response.status == 404, missing
        await admin_shows(page, base_url, text)

    with daphne(project, "ready-made") as base_url:
        await in_chromium("readme-ready-made", scenario)


@pytest.mark.browser
async def test_readme_own_consumer_and_page(tmp_path, venv_bin) -> None:
    project = set_up(tmp_path, venv_bin, skip=(LANGCHAIN_ONLY,))
    text = "안녕하세요, tutor"

    async def scenario(page: Page) -> None:
        await sign_in(page, base_url, "/tutor/")
        # The tutor's consumer starts the conversation (llm_first_user_message_template).
        await expect(page.locator(AI_COMPLETE)).to_have_count(1)
        await expect(page.locator(HUMAN)).to_have_count(0)
        await chat_and_reload(page, "readme-own-consumer", text, greeting=True)
        await admin_shows(page, base_url, text)

    with daphne(project, "own-consumer") as base_url:
        await in_chromium("readme-own-consumer", scenario)


LANGCHAIN_SCRIPT = '''
import asyncio, json
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from pyhub_ai.history import DjangoChatMessageHistory

class Recording(GenericFakeChatModel):
    prompts: list = []
    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.prompts.append([m.content for m in messages])
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

llm = Recording(messages=iter([AIMessage(content=f"reply {i}") for i in range(4)]), prompts=[])
prompt = ChatPromptTemplate.from_messages([
    ("system", "You are a helpful assistant."),
    MessagesPlaceholder(variable_name="history"),
    ("human", "{question}"),
])
chain = RunnableWithMessageHistory(
    prompt | llm,
    lambda session_id: DjangoChatMessageHistory(session_id=session_id),
    input_messages_key="question",
    history_messages_key="history",
)
chain.invoke({"question": "Hi! I'm bob"}, config={"configurable": {"session_id": "bob"}})
chain.invoke({"question": "What's my name?"}, config={"configurable": {"session_id": "bob"}})
async def in_async():
    await chain.ainvoke({"question": "I'm alice"}, config={"configurable": {"session_id": "alice"}})
    await chain.ainvoke({"question": "Who am I?"}, config={"configurable": {"session_id": "alice"}})
asyncio.run(in_async())
print("RESULT " + json.dumps({
    "prompts": llm.prompts,
    "stored": {key: [m.content for m in DjangoChatMessageHistory(session_id=key).messages] for key in ("bob", "alice")},
}))
'''


def test_langchain_only_project(tmp_path, venv_bin) -> None:
    project = BlankProject(tmp_path / "project", venv_bin)
    settings = project.directory / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + '\nINSTALLED_APPS += ["pyhub_ai"]\n')

    migrate = project.manage("migrate")
    check = project.manage("check")
    assert "Applying pyhub_ai.0001_initial... OK" in migrate.stdout
    for output in (migrate, check):
        assert not re.search(r"pyhub_ai\.[EWI]\d{3}", output.stdout + output.stderr), output.stdout + output.stderr
    result = project.manage("shell", "-c", LANGCHAIN_SCRIPT)

    data = json.loads(result.stdout.split("RESULT ", 1)[1])
    second_sync, second_async = data["prompts"][1], data["prompts"][3]
    assert second_sync == ["You are a helpful assistant.", "Hi! I'm bob", "reply 0", "What's my name?"]
    assert second_async == ["You are a helpful assistant.", "I'm alice", "reply 2", "Who am I?"]
    assert data["stored"] == {
        "bob": ["Hi! I'm bob", "reply 0", "What's my name?", "reply 1"],
        "alice": ["I'm alice", "reply 2", "Who am I?", "reply 3"],
    }


def test_the_readme_section_applies_every_block_it_shows() -> None:
    """Every code block of the section is a file edit or commands the tests understand, and the
    commands a reader runs are the ones the tests run."""
    steps = readme_steps()
    commands = [command for step in steps for command in step.commands]
    assert "python manage.py migrate" in commands
    assert "daphne mysite.asgi:application" in commands
    assert "python manage.py startapp chat" in commands
    assert readme_section().count("```python") == len([step for step in steps if step.path])


def test_the_wheel_holds_the_app_and_nothing_else(wheel) -> None:
    """Code, templates, static files, migrations and compiled translations; no tests, no demo,
    no translation sources; small."""
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}

    assert top_level == {"pyhub_ai", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for expected in (
        "pyhub_ai/migrations/0001_initial.py",
        "pyhub_ai/templates/pyhub_ai/chat_room_ws.html",
        "pyhub_ai/templates/registration/login.html",
        "pyhub_ai/static/pyhub_ai/chat.js",
        "pyhub_ai/locale/ko/LC_MESSAGES/django.mo",
        "pyhub_ai/py.typed",
    ):
        assert expected in names
    assert not [name for name in names if name.endswith(".po") or "/tests/" in name or name.endswith(".pyc")]
    assert wheel.stat().st_size < 400_000, f"{wheel.name}: {wheel.stat().st_size:,} bytes"
