"""A real daphne server in a child process, serving the demo on the pytest-django test database.

Use the ``live_daphne`` fixture (import it into the test module, or into conftest.py) in a test
marked ``@pytest.mark.django_db(transaction=True)``: rows the test creates are committed, so the
server sees them, and the server's rows are visible to the test. It yields the base URL, e.g.
``http://127.0.0.1:40123``. The server's output goes to ``test-artifacts/daphne-<test>.log``
and is printed when the server does not start, and after a failed test.

``run_daphnes(count, name, extra_env=...)`` starts several such servers at once (the
multi-process tests: each a ``LiveServer`` with its ``url``, ``ws_url`` and ``pid``).
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
ASGI_APPLICATION = "mysite.asgi:application"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


class LiveServerError(RuntimeError):
    """The daphne child process did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 200) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


@dataclass(frozen=True)
class LiveServer:
    """One running daphne child: its base URL, its output file and its process (``pid``)."""

    url: str
    log_path: Path
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def output(self, lines: int = 200) -> str:
        return _tail(self.log_path, lines)


def _spawn(
    name: str, settings_module: str, application: str, extra_env: dict[str, str] | None, port: int | None = None
) -> tuple[LiveServer, list[str]]:
    host, port = "127.0.0.1", port or free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "PYHUB_AI_TEST_USE_TEST_DB": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        # Never reach a real model from the tests, whatever the developer's shell or .env says.
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), application]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return LiveServer(f"http://{host}:{port}", log_path, process), command


def _wait_until_listening(server: LiveServer, command: list[str], deadline: float, timeout: float) -> None:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    while not _accepts_connections(host, int(port)):
        if server.process.poll() is not None:
            raise LiveServerError(
                f"daphne exited with status {server.process.returncode} before listening on port {port}.\n"
                f"Command: {' '.join(command)}\nOutput ({server.log_path}):\n{server.output()}"
            )
        if time.monotonic() > deadline:
            raise LiveServerError(
                f"daphne did not listen on port {port} within {timeout:.0f} s.\n"
                f"Command: {' '.join(command)}\nOutput ({server.log_path}):\n{server.output()}"
            )
        time.sleep(0.05)


@contextmanager
def run_daphnes(
    count: int,
    name: str = "daphne",
    *,
    settings_module: str = "tests.settings",
    application: str = ASGI_APPLICATION,
    extra_env: dict[str, str] | None = None,
    timeout: float = START_TIMEOUT,
    port: int | None = None,
) -> Iterator[list[LiveServer]]:
    """Start ``count`` daphne processes (each on its own free port of 127.0.0.1, all on the
    test database, with ``extra_env`` added to their environment); yield them once all of them
    listen; stop every one that is still running at the end (also after a failure).

    Their output goes to ``test-artifacts/<name>-<n>.log`` (``<name>.log`` for one server).
    ``port`` (one server only) listens on that port instead of a free one, e.g. to restart a
    server where its clients will reconnect.
    """
    if port is not None and count != 1:
        raise ValueError("run_daphnes(port=...) starts exactly one server (count=1).")
    servers: list[LiveServer] = []
    try:
        started = []
        for index in range(1, count + 1):
            server_name = name if count == 1 else f"{name}-{index}"
            started.append(_spawn(server_name, settings_module, application, extra_env, port))
            servers.append(started[-1][0])
        deadline = time.monotonic() + timeout
        for server, command in started:
            _wait_until_listening(server, command, deadline, timeout)
        yield servers
    finally:
        for server in servers:
            _stop(server.process)


@contextmanager
def run_daphne(
    name: str = "daphne",
    *,
    settings_module: str = "tests.settings",
    application: str = ASGI_APPLICATION,
    extra_env: dict[str, str] | None = None,
    timeout: float = START_TIMEOUT,
    port: int | None = None,
) -> Iterator[tuple[str, Path]]:
    """Start ``daphne`` on a free port of 127.0.0.1 (or on ``port``); yield ``(base_url, log_path)``; stop it."""
    with run_daphnes(
        1, name, settings_module=settings_module, application=application, extra_env=extra_env, timeout=timeout, port=port
    ) as (server,):
        yield server.url, server.log_path


@pytest.fixture
def live_daphne(request, transactional_db) -> Iterator[str]:
    """The base URL of a daphne server running the demo project on the test database."""
    with run_daphne(f"daphne-{request.node.name}") as (base_url, log_path):
        yield base_url
    # Shown by pytest only when the test failed (captured output of a passing test is dropped).
    print(f"---- daphne output ({log_path}) ----\n{_tail(log_path)}")
