# The README's two commands are `make run` and `make test`; the rest are helpers.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# pyenv picks 3.13 from .python-version; elsewhere use any python3.12+.
PYTHON ?= $(shell for p in python3.13 python3.12 python3 python; do \
	  if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then echo $$p; break; fi; done)

# uv installs .venv exactly as uv.lock says (every transitive dependency pinned, with
# hashes). uv itself comes from PyPI, pinned, into a venv of its own: `uv sync` removes from
# .venv whatever the lock does not list.
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# uv uses the interpreter found above and never downloads one.
export UV_PYTHON_DOWNLOADS := never
UV_PYTHON = --python $(if $(PYTHON),$(shell $(PYTHON) -c 'import sys; print(sys.executable)'))
# requirements.txt (what the Docker image installs) and requirements-dev.txt (the pip
# fallback below) are exports of uv.lock; `make check` fails when they no longer match it.
EXPORT := $(UV) export --frozen --format requirements.txt

.PHONY: run test install check lint format migrations-check imports-check lock-check \
	lock requirements uv bench clean

# INSTALLER=pip, or a machine where uv cannot be installed, installs requirements-dev.txt
# with pip instead: the same pins and hashes, into a new .venv.
$(VENV)/.installed: pyproject.toml uv.lock requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is required (see .python-version)"; exit 1; }
	@if [ "$(INSTALLER)" != pip ] && { $(MAKE) --no-print-directory -q uv || $(MAKE) --no-print-directory uv; }; then \
	  set -x; $(UV) sync --locked --quiet $(UV_PYTHON); \
	else \
	  echo "make: installing requirements-dev.txt with pip instead of uv" >&2; \
	  set -x; rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) \
	    && $(PY) -m pip install --quiet --require-hashes --no-deps -r requirements-dev.txt; \
	fi
	touch $@

install: $(VENV)/.installed

# The stamp names the version, so changing UV_VERSION installs the new one.
$(TOOLS)/.uv-$(UV_VERSION):
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is required (see .python-version)"; exit 1; }
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION)
	touch $@

uv: $(TOOLS)/.uv-$(UV_VERSION)

# Quiet: one line per process on the terminal, the rest in DATA_DIR/logs/studio.log
# (runstudio). The set-up steps say nothing unless something is wrong.
run: install
	@LOG_LEVEL=WARNING $(PY) manage.py migrate --noinput --verbosity 0
	@LOG_LEVEL=WARNING $(PY) manage.py collectstatic --noinput --verbosity 0
	@LOG_LEVEL=WARNING exec $(PY) manage.py runstudio --log-level $(or $(LOG_LEVEL),INFO)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# What CI checks besides the tests; `make -k check` reports every failing one.
check: lint migrations-check imports-check lock-check

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

migrations-check: install
	$(PY) manage.py makemigrations --check --dry-run

# The layers and the other import rules in pyproject.toml, [tool.importlinter].
imports-check: install
	$(VENV)/bin/lint-imports --no-logo

lock-check: uv
	$(UV) lock --check $(UV_PYTHON)
	@diff -u requirements.txt <($(EXPORT) --no-dev) \
	  && diff -u requirements-dev.txt <($(EXPORT)) \
	  || { echo "requirements*.txt no longer match uv.lock: run make requirements" >&2; exit 1; }

# After editing the dependencies in pyproject.toml by hand (`uv add` and `uv remove` lock
# by themselves): lock again, export, and install.
lock: uv
	$(UV) lock $(UV_PYTHON)
	$(MAKE) --no-print-directory requirements install

requirements: uv
	$(EXPORT) --no-dev > requirements.txt.new && mv requirements.txt.new requirements.txt
	$(EXPORT) > requirements-dev.txt.new && mv requirements-dev.txt.new requirements-dev.txt

clean:
	rm -rf $(VENV) $(TOOLS) var

# The HTTP load benchmark needs wrk (Debian's package); installed here only if missing.
bench: install
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) bench/run.py
