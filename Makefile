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

# Most tests wait on real servers and clients rather than compute: one worker per core,
# each test file on one worker (its module fixtures, such as a Postfix, start once).
TEST_WORKERS ?= auto

unit: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

test: lint typecheck unit

BENCH_PACKAGES := postgresql postfix dovecot-imapd dovecot-lmtpd

bench: $(STAMP)
	@# The peers: Dovecot (IMAP), Postfix -> Dovecot LMTP (SMTP ingest), and the PostgreSQL
	@# server the ingest benchmark runs a store on. Installed where we can (root on Debian);
	@# Postfix is preseeded "No configuration": the benchmark runs its own instance.
	@missing=$$(for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null; \
	fi
	$(BIN)/python bench/smtp_ingest.py
	$(BIN)/python bench/smtp_memory.py
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/imap_fetch.py
	$(BIN)/python bench/imap_idle.py
	$(BIN)/python bench/tlog.py
	@# The log API benchmark's peer is nginx serving the same tiles as static files.
	@test -x /usr/sbin/nginx || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light >/dev/null)
	$(BIN)/python bench/log_api.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
