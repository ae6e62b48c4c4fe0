# The README's two commands: `make demo` and `make test`. Each creates (or reuses) the
# local virtual environment .venv and installs what it needs, and no more, before running:
# `make demo` the package alone, `make test` the package with its test extra (pytest,
# pytest-xdist, torch, ...). Each has its own stamp, so the second of the two installs
# only what the first left out.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.installed-package
TEST_STAMP := $(VENV)/.installed-test-extra

.PHONY: demo test test-fast lint format venv clean

venv: $(TEST_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the packaging metadata changes.
$(DEMO_STAMP): setup.py pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	@touch $@

# The test extra comes with the package itself, so it satisfies the demo's stamp too.
$(TEST_STAMP): setup.py pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@ $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m genesis_tf.demo $(DEMO_FLAGS)

# Two pytest workers, one per core of the project's machines; --dist loadfile keeps each
# test file in one worker, so its module fixtures (a run trained once, background
# processes) serve all of its tests.
test: $(TEST_STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

# Skips the tests marked slow (multi-process, long runs).
test-fast: $(TEST_STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow"

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check genesis_tf tfds_builders tests benchmarks setup.py

format: $(TEST_STAMP)
	$(VENV)/bin/ruff format genesis_tf tfds_builders tests benchmarks setup.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
