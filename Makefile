# Both entry points build the virtual environment at .venv/ from scratch when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo demo-console lint typecheck proto bench clean venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup

demo: $(STAMP)
	$(BIN)/mlax demo

# The demo, then its federation stays up with a web console per demo officer (Ctrl-C stops).
demo-console: $(STAMP)
	$(BIN)/mlax demo --console

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Regenerate exchange/_proto from proto/ (a test fails when the committed code differs).
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py exchange/_proto

bench: $(STAMP)
	$(BIN)/python bench/bench_envelope.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
