"""Settings of the benchmarks: the demo project's, on a throwaway database chosen by the runner.

``python -m bench`` starts one worker process per database with:

* ``PYHUB_AI_BENCH_DB=sqlite`` and ``PYHUB_AI_BENCH_SQLITE_PATH`` (a file under ``var/bench/``), or
* ``PYHUB_AI_BENCH_DB=postgres``, ``PYHUB_AI_BENCH_POSTGRES_URL`` (the server) and
  ``PYHUB_AI_BENCH_POSTGRES_NAME`` (the database the runner created for this run).

The channel layer is the in-memory one (a turn does not use it), and the log is quiet.
"""
import os

import environ

from mysite.settings import *  # noqa: F403
from mysite.settings import BASE_DIR

SECRET_KEY = "pyhub-ai-bench"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PYHUB_AI_OFFLINE_MODEL_DELAY = 0
PYHUB_AI_RATE_LIMIT = None  # the benchmark runs dozens of turns in one thread
PYHUB_AI_GLOBAL_RATE_LIMIT = None
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
SILENCED_SYSTEM_CHECKS = ["pyhub_ai.W001"]

_engine = os.environ.get("PYHUB_AI_BENCH_DB", "sqlite")
if _engine == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("PYHUB_AI_BENCH_SQLITE_PATH", str(BASE_DIR / "var" / "bench" / "bench.sqlite3")),
        }
    }
elif _engine == "postgres":
    _url = os.environ.get("PYHUB_AI_BENCH_POSTGRES_URL")
    if not _url:
        raise RuntimeError("PYHUB_AI_BENCH_POSTGRES_URL is not set (`make bench` starts a server and sets it).")
    _config = environ.Env.db_url_config(_url)
    _config["NAME"] = os.environ.get("PYHUB_AI_BENCH_POSTGRES_NAME") or _config["NAME"]
    DATABASES = {"default": _config}
else:
    raise RuntimeError(f"PYHUB_AI_BENCH_DB must be 'sqlite' or 'postgres', not {_engine!r}.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"pyhub_ai": {"handlers": ["console"], "level": "WARNING"}},
}
