# pyhub_ai: the demo project, the tests and the benchmarks.
#
#   make run                  the demo on http://127.0.0.1:8000/ (PORT=8001 make run to change it)
#   make test                 every test: the unit suite on SQLite + in-memory channel layer, again
#                             on PostgreSQL + Redis channel layer (throwaway servers), then the browser suite
#   make test ARGS="-k codec" extra pytest arguments (given to every pytest run)
#   make bench                the benchmarks (python -m bench): history scaling and websocket load, on SQLite and throwaway PostgreSQL + Redis;
#                             the table goes to bench/results/latest.md (ARGS="--help" for options)
#   make clean                removes var/ and test-artifacts/
#
# Works with no API key (the offline demo model answers); OPENAI_API_KEY, OPENAI_BASE_URL,
# DATABASE_URL and REDIS_URL are read from the environment (or a .env file) by mysite/settings.py.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
HOST := 127.0.0.1
PORT ?= 8000
ARGS ?=

.PHONY: run install-demo test bench clean

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when pyproject.toml changed since the last install (editable: code changes
# need no reinstall).
DEMO_STAMP := $(VENV)/.pyhub-ai-demo-deps
install-demo: $(VENV_PYTHON)
	@want="$$(sha256sum pyproject.toml | cut -d' ' -f1)"; \
	if [ "$$(cat $(DEMO_STAMP) 2>/dev/null)" != "$$want" ]; then \
		set -e; \
		echo "Installing pyhub_ai and the demo's dependencies into $(VENV)"; \
		$(VENV_PYTHON) -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"; \
		$(VENV_PYTHON) -m pip install --quiet --disable-pip-version-check -e . --group demo; \
		echo "$$want" > $(DEMO_STAMP); \
	fi

run: install-demo
	@if command -v msgfmt >/dev/null 2>&1; then \
		$(VENV_PYTHON) manage.py compilemessages --ignore "$(VENV)" --ignore node_modules --verbosity 0; \
	else \
		echo "gettext (msgfmt) is not installed: using the committed .mo files."; \
	fi
	DEBUG="$${DEBUG:-true}" $(VENV_PYTHON) manage.py migrate --no-input
	DEBUG="$${DEBUG:-true}" $(VENV_PYTHON) manage.py ensure_demo_user
	@echo
	@echo "  pyhub_ai demo: http://$(HOST):$(PORT)/   (Ctrl+C to stop)"
	@if [ -z "$${OPENAI_API_KEY:-}$${OPENAI_BASE_URL:-}" ]; then \
		echo "  No OPENAI_API_KEY in the environment: unless .env sets one, the offline demo model answers."; \
	fi
	@echo
	DEBUG="$${DEBUG:-true}" $(VENV)/bin/daphne -b $(HOST) -p $(PORT) mysite.asgi:application

test:
	bash scripts/test.sh $(ARGS)

bench:
	bash scripts/bench.sh $(ARGS)

clean:
	rm -rf var/ test-artifacts/
