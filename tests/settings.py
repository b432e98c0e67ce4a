"""Test settings: the demo project's, with a file SQLite test database and fast hashing."""
from mysite.settings import *  # noqa: F403
from mysite.settings import BASE_DIR, DATABASES

SECRET_KEY = "pyhub-ai-tests"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PYHUB_AI_OFFLINE_MODEL_DELAY = 0

# A file test database: channels' connection cleanup and the live daphne server need one.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test_db.sqlite3")}
SILENCED_SYSTEM_CHECKS = ["pyhub_ai.W001"]
