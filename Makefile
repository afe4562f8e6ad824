# Two set-up commands: `make demo` and `make test`. Each bootstraps .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml setup.py src/trueshape/_warp.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Into demo-out/ (replaced on each run), not a new temporary folder each time.
demo: $(STAMP)
	$(BIN)/trueshape demo demo-out --force

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) build src/*.egg-info src/trueshape/*.so .pytest_cache .mypy_cache .ruff_cache demo-out
