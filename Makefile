# Two commands for a newcomer: `make run` and `make test`. Both bootstrap .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench proto clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/flasktrack up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/audit_append.py

# After editing flight/proto/flight_sql.proto: regenerate the committed Python classes and stubs.
proto: $(STAMP)
	$(BIN)/python -m flight.proto.generate

clean:
	rm -rf $(VENV) .flasktrack .pytest_cache .mypy_cache .ruff_cache
