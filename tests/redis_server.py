"""A real Redis for the tests: the ``redis_url`` fixture (import it into a test module).

Uses ``PYHUB_AI_TEST_REDIS_URL`` when set. Otherwise starts ``redis-server`` on a free local
port for the test session, with nothing saved to disk, and stops it at the end. Without
either, the tests that need Redis fail on CI (``CI=true``) and are skipped elsewhere.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_ping(url: str, process: subprocess.Popen, log: Path) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            if client.ping():
                return
        except redis.ConnectionError:
            pass
        if process.poll() is not None:
            output = log.read_text() if log.exists() else ""
            raise RuntimeError(f"redis-server exited with status {process.returncode}:\n{output}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not answer PING within {STARTUP_TIMEOUT} seconds.")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """The URL of a Redis server the tests may write to."""
    if url := os.environ.get("PYHUB_AI_TEST_REDIS_URL"):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "No Redis: set PYHUB_AI_TEST_REDIS_URL or install redis-server to run the Redis tests."
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    port = _free_port()
    directory = tmp_path_factory.mktemp("redis")
    log = directory / "redis.log"
    process = subprocess.Popen(
        [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            *("--dir", str(directory), "--logfile", str(log)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for_ping(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
