"""pyhub_ai: LLM chat rooms for Django that keep every conversation."""

__version__ = "0.1.0"
