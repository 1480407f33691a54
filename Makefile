# Two commands for a newcomer: `make demo` and `make test`. Both build .venv when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The fundx command sets Prefect's defaults itself (PREFECT_HOME under FUNDX_HOME, quiet logs,
# no heartbeats); tests/conftest.py does the same for the suite.
export FUNDX_HOME ?= $(CURDIR)/var

.PHONY: demo test lint audit bench bench-peers chaos serve serve-stop serve-status venv constraints clean help docs docs-refs messages

help:
	@echo "make demo   - start the sandbox agencies and run one whole night (SQLite ledger, ephemeral Prefect)"
	@echo "make test   - make lint, then the test suite (uses PostgreSQL on 127.0.0.1:5432 when it is up)"
	@echo "make lint   - ruff, mypy and the import-linter layers over the project's code (pyproject.toml), then make audit"
	@echo "make audit  - known vulnerabilities in constraints.txt's pins (pip-audit; docs/testing.md)"
	@echo "make bench  - print speed ratios against baselines measured in the same run"
	@echo "make bench-peers - fundx next to datacontract-cli, pandera-polars and dlt, same data and checks (side venv .venv-peers)"
	@echo "make chaos  - eight feeds, every fault profile, SIGKILLs of the exchange: 0 lost, 0 duplicated, no canary or secret in plain text"
	@echo "make serve  - a Prefect server on 127.0.0.1:4200, the fundx work pool, its deployments and a worker (background)"
	@echo "make serve-stop - stop make serve's worker and server"
	@echo "make serve-pg - make serve with Prefect's database and the ledger on PostgreSQL (FUNDX_SERVE_PG_URL) and two workers (WORKERS=N)"
	@echo "make serve-status - whether make serve's server and workers run"
	@echo "make docs   - build the documentation site into site/ (mkdocs build --strict, offline)"
	@echo "make docs-refs - regenerate docs/reference/ (CLI, settings), docs/index.md and docs/security.md"
	@echo "make messages - extract the console's messages, update and compile the zh_CN catalogue (fundx/console/locale)"
	@echo "make clean  - remove var/ and agencies/ (state of the demo)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,browser]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/fundx demo

# the suite on a worker per core (at most 4), a test module's tests on one worker (its fixtures made once)
test: $(STAMP) browsers lint
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadscope

# ruff and mypy read their settings (rules, the packages mypy checks) from pyproject.toml; caches: .ruff_cache, .mypy_cache.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(MAKE) --no-print-directory audit

# The known-vulnerability audit of the pinned dependencies (.ci/audit.py; ignore list: .ci/audit-ignore.txt).
audit: $(STAMP)
	$(BIN)/python .ci/audit.py

# The console's browser tests (tests/console) drive Debian's chromium through its chromedriver, never a
# downloaded browser (and a CJK font, so screenshots show the agencies' Chinese and the cases report its Chinese
# titles: matching/report_charts.py). Installed here when missing
# and we are root; otherwise those tests skip, saying why.
.PHONY: browsers
browsers:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
	    && [ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium and chromium-driver for the console's browser tests"; \
	  ( apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	      --no-install-recommends chromium chromium-driver fonts-wqy-microhei >/dev/null ) \
	  || echo "could not install chromium: the console's browser tests will skip"; \
	else \
	  echo "no /usr/bin/chromium: the console's browser tests will skip (sudo apt-get install chromium chromium-driver)"; \
	fi

bench: $(STAMP)
	$(BIN)/python -m bench

# The peers fundx is measured against live in a side venv of their own (pinned: bench/peers/requirements.txt),
# run as child processes of the harness (bench/peers/): fundx's .venv never holds them. ARGS: e.g. --quick, --rows 200k.
PEERS := .venv-peers
$(PEERS)/.installed: bench/peers/requirements.txt
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet -r bench/peers/requirements.txt
	touch $@

bench-peers: $(STAMP) $(PEERS)/.installed
	$(BIN)/python -m bench.peers $(ARGS)

# The chaos night (docs/testing.md); its options: $(BIN)/python -m chaos --help
chaos: $(STAMP)
	$(BIN)/python -m chaos

# The orchestration is deployments/run.py (start | stop | status): logs and pids under $(FUNDX_HOME)/serve.
serve: $(STAMP)
	$(BIN)/python -m deployments.run start

# The same with Prefect's database and the ledger on PostgreSQL and several workers (docs/postgresql.md).
.PHONY: serve-pg
serve-pg: $(STAMP)
	$(BIN)/python -m deployments.run start --postgres$(if $(WORKERS), --workers $(WORKERS))

serve-stop:
	$(BIN)/python -m deployments.run stop

serve-status:
	$(BIN)/python -m deployments.run status

# The documentation site (mkdocs.yml): built offline, broken links and anchors fail it. The generated pages
# (command and settings references, the site's copies of README.md and SECURITY.md) come from the code:
# docs-refs rewrites them; tests/docs/test_docs.py fails while a committed copy is stale. NO_MKDOCS_2_WARNING
# quiets mkdocs-material 9.8's end-of-life banner (May 2027; its successor is Zensical).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "site/index.html"

docs-refs: $(STAMP)
	$(BIN)/python tools/docs_refs.py --write

# The console's messages (fundx/console/i18n.py): extract them (babel.cfg), update the zh_CN catalogue, compile it.
# Translate the new or fuzzy entries of fundx/console/locale/zh_CN/LC_MESSAGES/messages.po, then run it again.
LOCALE := fundx/console/locale
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k L -k N_ --no-location --sort-output --omit-header -o $(LOCALE)/messages.pot fundx/console
	$(BIN)/pybabel update -i $(LOCALE)/messages.pot -d $(LOCALE) -l zh_CN --no-wrap --ignore-obsolete
	$(BIN)/pybabel compile --statistics -d $(LOCALE) -l zh_CN

constraints: $(STAMP)
	( head -2 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable ) > constraints.new && mv constraints.new constraints.txt

clean:
	-@test -x $(BIN)/python && $(BIN)/python -m deployments.run stop >/dev/null 2>&1 || true
	rm -rf var agencies
