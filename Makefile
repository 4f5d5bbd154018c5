# shopreco: the two Quick start commands are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: demo test lint bench venv clean browser-deps check-install

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

## Set everything up and serve the demo shop at http://$(HOST):$(PORT) (SQLite, tasks in-process).
## DEBUG is on here only (static files, error pages; the settings default it off): the debug
## pages show the settings and environment, so never serve them beyond this machine.
demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo --if-empty
	$(BIN)/python manage.py shopreco_recompute
	$(BIN)/python manage.py demo_admin --host $(HOST) --port $(PORT)
	DJANGO_DEBUG=1 $(BIN)/python manage.py runserver $(HOST):$(PORT)

## Debian's chromium + Playwright's Python driver for the browser test (needs root for apt-get;
## without it the browser test skips locally, and fails in CI, where it must run).
browser-deps: $(STAMP)
	-sh scripts/install-browser.sh $(BIN)/python

## The whole test suite (SQLite unless DATABASE_URL says otherwise).
test: $(STAMP) browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run

## The install check (CI runs it after the suite; `make test` never does): build the sdist and
## wheel, twine check them, install the wheel into a fresh venv and follow the README's "Add it
## to your shop" in a new startproject. CHECK_INSTALL_ARGS="--keep" keeps its folder.
CHECK_INSTALL_ARGS ?=
check-install: $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-packaging.txt
	$(BIN)/python tests/packaging/check_install.py $(CHECK_INSTALL_ARGS)

## Side-by-side benchmarks against Surprise and implicit; figures go to bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var db.sqlite3 db.sqlite3-wal db.sqlite3-shm .pytest_cache
