"""Test settings: the demo project's, with a named test database and fast hashing.

DATABASE_URL and REDIS_URL (read by mysite/settings.py) choose the database and the channel
layer: SQLite and the in-memory layer by default; scripts/test.sh runs the unit suite a second
time on PostgreSQL with the Redis channel layer.
"""
import os

from mysite.settings import *  # noqa: F403
from mysite.settings import BASE_DIR, DATABASES

SECRET_KEY = "pyhub-ai-tests"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests that count model calls set their own limits (tests/test_policies.py, tests/test_metering.py:
# its daphne children read them from the environment).
PYHUB_AI_RATE_LIMIT = os.environ.get("PYHUB_AI_RATE_LIMIT") or None
PYHUB_AI_GLOBAL_RATE_LIMIT = os.environ.get("PYHUB_AI_GLOBAL_RATE_LIMIT") or None
# Counts of one test's server never meet another's in a shared (Redis) cache.
if os.environ.get("PYHUB_AI_TEST_CACHE_PREFIX"):
    _cache = globals().get("CACHES", {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})["default"]
    CACHES = {"default": {**_cache, "KEY_PREFIX": os.environ["PYHUB_AI_TEST_CACHE_PREFIX"]}}
# One stream_delta per token, so tests can count them (tests/test_stop_and_crash.py checks the batching).
PYHUB_AI_STREAM_DELTA_INTERVAL = 0
# 0 (instant replies) unless the environment says otherwise: the multi-process tests give their
# daphne children a delay, a short save interval (a reply streams long enough to be cut) and a
# short turn-lock lease (the lock of a killed process expires soon).
PYHUB_AI_OFFLINE_MODEL_DELAY = float(os.environ.get("PYHUB_AI_OFFLINE_MODEL_DELAY", 0))
if os.environ.get("PYHUB_AI_STREAM_SAVE_INTERVAL"):
    PYHUB_AI_STREAM_SAVE_INTERVAL = float(os.environ["PYHUB_AI_STREAM_SAVE_INTERVAL"])
if os.environ.get("PYHUB_AI_TURN_LOCK_LEASE"):
    PYHUB_AI_TURN_LOCK_LEASE = float(os.environ["PYHUB_AI_TURN_LOCK_LEASE"])
# The browser tests page through long histories in small pages (tests/test_browser_ux.py).
if os.environ.get("PYHUB_AI_HISTORY_PAGE_SIZE"):
    PYHUB_AI_HISTORY_PAGE_SIZE = int(os.environ["PYHUB_AI_HISTORY_PAGE_SIZE"])

# The test database, named explicitly and once per test process: its live daphne children
# (tests/live_server.py sets PYHUB_AI_TEST_USE_TEST_DB=1) inherit the variable below and open the
# same database, and concurrent runs never collide.
_default = DATABASES["default"]
if _default["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not SQLite's in-memory default: channels' connection cleanup and the live daphne
    # server need one.
    (BASE_DIR / "var").mkdir(exist_ok=True)
    os.environ.setdefault("PYHUB_AI_TEST_DB", str(BASE_DIR / "var" / f"test_db_{os.getpid()}.sqlite3"))
    _default["TEST"] = {**_default.get("TEST", {}), "NAME": os.environ["PYHUB_AI_TEST_DB"]}
else:
    # PostgreSQL (scripts/test.sh gives DATABASE_URL=$PYHUB_AI_TEST_POSTGRES_URL) or another server.
    os.environ.setdefault("PYHUB_AI_TEST_DB_NAME", f"test_{_default['NAME'] or 'pyhub_ai'}_{os.getpid()}")
    _default["TEST"] = {**_default.get("TEST", {}), "NAME": os.environ["PYHUB_AI_TEST_DB_NAME"]}

# The live daphne server of the browser tests (tests/live_server.py) opens the test database.
if os.environ.get("PYHUB_AI_TEST_USE_TEST_DB") == "1":
    _default["NAME"] = _default["TEST"]["NAME"]
SILENCED_SYSTEM_CHECKS = ["pyhub_ai.W001"]
# The budget tests' daphne children read their PYHUB_AI_BUDGETS (JSON) from the environment
# (tests/test_budget_multiprocess.py).
if os.environ.get("PYHUB_AI_TEST_BUDGETS"):
    import json

    PYHUB_AI_BUDGETS = json.loads(os.environ["PYHUB_AI_TEST_BUDGETS"])
