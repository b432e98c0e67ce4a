"""Settings of the websocket load benchmark (bench/ws_load.py): the demo project's, on a
throwaway database and channel layer chosen by the runner through the environment.

* ``PYHUB_AI_BENCH_LOAD_DB=sqlite`` and ``PYHUB_AI_BENCH_LOAD_SQLITE_PATH`` (a file under
  ``var/bench/``), or ``PYHUB_AI_BENCH_LOAD_DB=postgres``, ``PYHUB_AI_BENCH_POSTGRES_URL`` (the
  server) and ``PYHUB_AI_BENCH_LOAD_POSTGRES_NAME`` (the database the runner created).
* ``PYHUB_AI_BENCH_LOAD_REDIS_URL``: the Redis channel layer and cache on that server; unset:
  the in-memory channel layer and the local-memory cache.

SQLite is configured as the demo project (mysite.settings) deploys it: WAL journal,
``synchronous=NORMAL``, ``BEGIN IMMEDIATE`` transactions and a 20 s busy timeout; connection
reuse (``CONN_MAX_AGE``, ``CONN_HEALTH_CHECKS``) is taken from mysite.settings for both
databases. DEBUG is off (with DEBUG on, Django keeps every query in memory) and the log is quiet.
"""
import os

import environ

from mysite.settings import *  # noqa: F403
from mysite.settings import BASE_DIR
from mysite.settings import DATABASES as _DEMO_DATABASES

_demo_database = dict(_DEMO_DATABASES["default"])

SECRET_KEY = "pyhub-ai-bench-load"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SILENCED_SYSTEM_CHECKS = ["pyhub_ai.W001"]
OPENAI_API_KEY = ""
OPENAI_BASE_URL = ""
# Hundreds of visitors at once: the site-wide ceiling on model calls would refuse most turns.
PYHUB_AI_GLOBAL_RATE_LIMIT = None

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

# Connection reuse as the demo project deploys it (mysite.settings: CONN_MAX_AGE, health checks);
# PYHUB_AI_BENCH_LOAD_CONN_MAX_AGE overrides it for experiments ("0", "600", "none").
for _key in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS"):
    if _key in _demo_database:
        DATABASES["default"][_key] = _demo_database[_key]
if os.environ.get("PYHUB_AI_BENCH_LOAD_CONN_MAX_AGE"):
    _age = os.environ["PYHUB_AI_BENCH_LOAD_CONN_MAX_AGE"]
    DATABASES["default"]["CONN_MAX_AGE"] = None if _age == "none" else int(_age)

_redis_url = os.environ.get("PYHUB_AI_BENCH_LOAD_REDIS_URL", "")
if _redis_url:
    # As mysite.settings does with REDIS_URL: the channel layer, and the cache the turn rate
    # limit counts in, shared by every worker process.
    # The host options of mysite.settings (no read timeout, a pool of 2,000); experiments can
    # change the pool size.
    _host = {
        "address": _redis_url,
        "socket_timeout": None,
        "max_connections": int(os.environ.get("PYHUB_AI_BENCH_LOAD_REDIS_MAX_CONNECTIONS", "2000")),
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [_host]}}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _redis_url}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

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
