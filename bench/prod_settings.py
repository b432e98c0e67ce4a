"""Settings of the production-path benchmark (bench/prod_load.py): the websocket load
benchmark's (bench/load_settings.py: database and channel layer from the environment), with the
model configured the way a user configures it: ``OPENAI_BASE_URL`` (the benchmark's model
server, ``PYHUB_AI_BENCH_OPENAI_BASE_URL``) and ``OPENAI_API_KEY``.

``PYHUB_AI_BENCH_FAST_STREAM=0`` turns ``PYHUB_AI_LLM_FAST_STREAM`` off: the "before" rows, the
standard ``ChatOpenAI.astream`` path, in the same run.
"""
import os

from bench.load_settings import *  # noqa: F403

OPENAI_API_KEY = "sk-bench-not-a-real-key"
OPENAI_BASE_URL = os.environ.get("PYHUB_AI_BENCH_OPENAI_BASE_URL", "")
PYHUB_AI_LLM_FAST_STREAM = os.environ.get("PYHUB_AI_BENCH_FAST_STREAM", "1") == "1"
# Turns run back to back for the whole phase: a limit far above them, still checked every turn.
PYHUB_AI_RATE_LIMIT = "100000/m"
