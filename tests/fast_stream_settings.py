"""tests.settings for the live daphne of tests/test_fast_stream.py: the model is the fake
OpenAI-compatible server (``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` from the environment, as
mysite.settings reads them), and ``PYHUB_AI_TEST_FAST_STREAM=0`` turns the fast path off."""
import os

from tests.settings import *  # noqa: F403

PYHUB_AI_LLM_FAST_STREAM = os.environ.get("PYHUB_AI_TEST_FAST_STREAM", "1") == "1"
