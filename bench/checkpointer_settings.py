"""Settings of the checkpointer benchmark (bench/checkpointer.py): bench.settings, with SQLite
opened as the demo project opens it (WAL, synchronous=NORMAL, IMMEDIATE transactions; see
mysite/settings.py). The official SqliteSaver's connection gets the same pragmas, so both
savers commit alike."""
from bench.settings import *  # noqa: F403
from bench.settings import DATABASES

SQLITE_PRAGMAS = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {"init_command": SQLITE_PRAGMAS, "transaction_mode": "IMMEDIATE", "timeout": 20}
