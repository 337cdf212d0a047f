# Two entry points on a fresh machine: `make run` (set up, then open the application with the
# bundled model) and `make test` (set up, then lint, type-check and run the tests).
# torch is pinned and installed first: 2.13.0 is the CPU build this machine has on disk, and
# installing it before the project stops pip from resolving a multi-GB CUDA build instead.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# Loads third-party restoration networks (models add); without its dependencies, because its
# torchvision requirement pulls a multi-GB CUDA torch (model/spandrel_import.py stands in for the
# three torchvision functions it imports). Its own small dependencies are in pyproject.toml.
SPANDREL ?= spandrel==0.4.2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit bench clean

$(STAMP): pyproject.toml plugins/photo_tools/pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet --no-deps "$(SPANDREL)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet -e plugins/photo_tools
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/instructir-desktop $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check instructir_desktop tests benchmarks plugins
	$(BIN)/ruff format --check instructir_desktop tests benchmarks plugins
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

test: lint unit

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
