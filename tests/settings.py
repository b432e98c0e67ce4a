"""Test settings: the demo project's, with a file SQLite test database and fast hashing."""
import os

from mysite.settings import *  # noqa: F403
from mysite.settings import BASE_DIR, DATABASES

SECRET_KEY = "pyhub-ai-tests"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PYHUB_AI_OFFLINE_MODEL_DELAY = 0

# A file test database: channels' connection cleanup and the live daphne server need one.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    # One file per test process (inherited by its live daphne children), so runs never collide.
    os.environ.setdefault("PYHUB_AI_TEST_DB", str(BASE_DIR / "var" / f"test_db_{os.getpid()}.sqlite3"))
    DATABASES["default"]["TEST"] = {"NAME": os.environ["PYHUB_AI_TEST_DB"]}

# The live daphne server of the browser tests (tests/live_server.py) opens the test database.
if os.environ.get("PYHUB_AI_TEST_USE_TEST_DB") == "1":
    DATABASES["default"]["NAME"] = DATABASES["default"].get("TEST", {}).get("NAME") or "test_" + DATABASES["default"]["NAME"]
SILENCED_SYSTEM_CHECKS = ["pyhub_ai.W001"]
