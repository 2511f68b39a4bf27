# sceneclf: `make run` sets everything up and starts the app; `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)

.PHONY: run setup install test test-smoke lint fmt bench clean-data

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

setup: install
	bash scripts/setup.sh

run: setup
	bash scripts/run.sh

# The whole suite. DATABASE_URL picks PostgreSQL (CI does); unset, it runs on SQLite.
test: install
	bash scripts/test.sh

# A quick subset on the embedded SQLite database (CI runs it beside the PostgreSQL suite).
test-smoke: install
	env -u DATABASE_URL bash scripts/test.sh -m smoke

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) benchmarks/extract.py --json var/bench-extract.json
	$(PY) benchmarks/predict.py --json var/bench-predict.json

clean-data:
	rm -rf var/sceneclf.sqlite3* var/celery-*.sqlite3* var/artifacts var/features var/uploads
