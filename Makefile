# The README's two commands: `make demo` and `make test`. Each creates (or reuses) the
# local virtual environment .venv and installs what it needs before running.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint format venv clean

venv: $(STAMP)

# Reinstall only when the packaging metadata changes.
$(STAMP): setup.py pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m genesis_tf.demo $(DEMO_FLAGS)

test: $(STAMP)
	$(PY) -m pytest

# Skips the tests marked slow (multi-process, long runs).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check genesis_tf tfds_builders tests benchmarks setup.py

format: $(STAMP)
	$(VENV)/bin/ruff format genesis_tf tfds_builders tests benchmarks setup.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
