"""Settings of the websocket load benchmark (bench/ws_load.py): the demo project's, on a
throwaway database and channel layer chosen by the runner through the environment.

* ``PYHUB_AI_BENCH_LOAD_DB=sqlite`` and ``PYHUB_AI_BENCH_LOAD_SQLITE_PATH`` (a file under
  ``var/bench/``), or ``PYHUB_AI_BENCH_LOAD_DB=postgres``, ``PYHUB_AI_BENCH_POSTGRES_URL`` (the
  server) and ``PYHUB_AI_BENCH_LOAD_POSTGRES_NAME`` (the database the runner created).
* ``PYHUB_AI_BENCH_LOAD_REDIS_URL``: the Redis channel layer on that server; unset: in-memory.

SQLite is configured like a production deployment of a small site would be: WAL journal,
``synchronous=NORMAL``, ``BEGIN IMMEDIATE`` transactions and a 20 s busy timeout. DEBUG is off
(with DEBUG on, Django keeps every query in memory) and the log is quiet.
"""
import os

import environ

from mysite.settings import *  # noqa: F403
from mysite.settings import BASE_DIR

SECRET_KEY = "pyhub-ai-bench-load"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SILENCED_SYSTEM_CHECKS = ["pyhub_ai.W001"]
OPENAI_API_KEY = ""
OPENAI_BASE_URL = ""

_engine = os.environ.get("PYHUB_AI_BENCH_LOAD_DB", "sqlite")
if _engine == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("PYHUB_AI_BENCH_LOAD_SQLITE_PATH", str(BASE_DIR / "var" / "bench" / "load.sqlite3")),
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
elif _engine == "postgres":
    _url = os.environ.get("PYHUB_AI_BENCH_POSTGRES_URL")
    if not _url:
        raise RuntimeError("PYHUB_AI_BENCH_POSTGRES_URL is not set (`make bench` starts a server and sets it).")
    _config = environ.Env.db_url_config(_url)
    _config["NAME"] = os.environ.get("PYHUB_AI_BENCH_LOAD_POSTGRES_NAME") or _config["NAME"]
    DATABASES = {"default": _config}
else:
    raise RuntimeError(f"PYHUB_AI_BENCH_LOAD_DB must be 'sqlite' or 'postgres', not {_engine!r}.")

_redis_url = os.environ.get("PYHUB_AI_BENCH_LOAD_REDIS_URL", "")
if _redis_url:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [_redis_url]}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

#: The fake model of bench/load_asgi.py: how many tokens a reply has, and the seconds between them.
PYHUB_AI_BENCH_LOAD_TOKENS = int(os.environ.get("PYHUB_AI_BENCH_LOAD_TOKENS", "50"))
PYHUB_AI_BENCH_LOAD_PACE = float(os.environ.get("PYHUB_AI_BENCH_LOAD_PACE", "0.02"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "pyhub_ai": {"handlers": ["console"], "level": "WARNING"},
        "django": {"handlers": ["console"], "level": "WARNING"},
    },
}
