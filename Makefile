PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench clean

$(BIN)/sharedctx: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(BIN)/sharedctx

install: $(BIN)/sharedctx

demo: install
	$(BIN)/sharedctx demo

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check sharedctx tests bench
	$(BIN)/mypy sharedctx

clean:
	rm -rf $(VENV) .sharedctx build *.egg-info
