# Two commands for a newcomer: `make demo` and `make test`. Both build .venv when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The fundx command sets Prefect's defaults itself (PREFECT_HOME under FUNDX_HOME, quiet logs,
# no heartbeats); tests/conftest.py does the same for the suite.
export FUNDX_HOME ?= $(CURDIR)/var

.PHONY: demo test bench venv constraints clean help

help:
	@echo "make demo   - start the sandbox agencies and run one whole night (SQLite ledger, ephemeral Prefect)"
	@echo "make test   - run the test suite (uses PostgreSQL on 127.0.0.1:5432 when it is up)"
	@echo "make bench  - print speed ratios against baselines measured in the same run"
	@echo "make clean  - remove var/ and agencies/ (state of the demo)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/fundx demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

constraints: $(STAMP)
	( head -2 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable ) > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf var agencies
