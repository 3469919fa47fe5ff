# Two entry points: `make demo` and `make test`. Both create .venv and install
# kmsguard with its test tools on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck unit demo benchmark docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

unit: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check kmsguard tests scripts benchmarks
	$(BIN)/ruff format --check kmsguard tests scripts benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: unit lint typecheck

demo: $(STAMP)
	bash scripts/demo.sh $(BIN)

benchmark: $(STAMP)
	$(BIN)/python benchmarks/run.py

docs: $(STAMP)
	$(BIN)/python scripts/gen_docs.py

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
