"""The model server of the production-path benchmark (bench/prod_load.py), in its own process.

    python -m bench.model_server --tokens 200 --pace 0.005

Serves ``POST /v1/chat/completions`` on a free port of 127.0.0.1 with tests/fake_openai.py's
OpenAI-compatible server: every streamed reply is ``--tokens`` words (one server-sent event
each, ``--pace`` seconds apart, then the finish and usage events). Prints the port on the first
line of stdout, then serves until it is terminated. Its CPU is not daphne's: the benchmark
counts daphne's CPU time only.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.fake_openai import FakeOpenAI

_WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jolly vexed zebras".split()


def reply_text(tokens: int) -> str:
    """The reply of ``tokens`` words (about five characters each, like a model's tokens)."""
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(tokens))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, required=True, help="words (server-sent events) per reply")
    parser.add_argument("--pace", type=float, default=0.005, help="seconds between two events (default 0.005)")
    parser.add_argument(
        "--keep-alive", action="store_true", help="serve as api.openai.com does: connections kept alive, chunked bodies (default: one request per connection)"
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeOpenAI(reply=reply_text(args.tokens), chunk_delay=args.pace, record=False, keep_alive=args.keep_alive) as server:
        print(server.port, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
