"""The demo project is safe to start on a server by mistake: no DEBUG pages, no public admin password."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


def demo_setting(name: str, **env: str) -> str:
    """A setting of mysite.settings as a fresh process reads it, with ``env`` as its environment."""
    clean = {key: value for key, value in os.environ.items() if key not in ("DEBUG", "DJANGO_SETTINGS_MODULE")}
    code = f"import mysite.settings as s; print(s.{name})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif((ROOT / ".env").exists(), reason="a .env file beside manage.py sets the demo's environment")
def test_debug_is_off_unless_the_environment_turns_it_on():
    assert demo_setting("DEBUG") == "False"
    assert demo_setting("DEBUG", DEBUG="true") == "True"


def test_make_run_turns_debug_on_for_its_own_server_on_127_0_0_1():
    recipe = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    daphne = next(line for line in recipe.splitlines() if "daphne" in line and " -b " in line)
    assert daphne.startswith('DEBUG="${DEBUG:-true}" ') and " -b 127.0.0.1 " in daphne


@pytest.mark.django_db
def test_the_demo_superusers_password_is_generated_once_per_checkout(settings, tmp_path):
    settings.BASE_DIR = tmp_path
    call_command("ensure_demo_user", stdout=io.StringIO())
    password_file = tmp_path / "var" / "demo-password"
    password = password_file.read_text().strip()

    call_command("ensure_demo_user", stdout=io.StringIO())  # the next `make run`

    assert password != "pyhub-demo" and len(password) >= 16
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert authenticate(username="demo", password=password) is not None
    assert authenticate(username="demo", password="pyhub-demo") is None
