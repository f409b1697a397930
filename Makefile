# Two commands on a fresh machine with python3 and make: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/borderline demo --once

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	@# The IMAP benchmark's peer is Dovecot; install it where we can (root on Debian).
	@test -x /usr/sbin/dovecot || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends dovecot-imapd >/dev/null)
	$(BIN)/python bench/smtp_ingest.py
	$(BIN)/python bench/smtp_memory.py
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/imap_fetch.py
	$(BIN)/python bench/tlog.py
	@# The log API benchmark's peer is nginx serving the same tiles as static files.
	@test -x /usr/sbin/nginx || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light >/dev/null)
	$(BIN)/python bench/log_api.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
