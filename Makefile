# FlashNotify: `make run` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
MANAGE := $(BIN)/python manage.py
PYTEST_ARGS ?=

.PHONY: setup run test bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)
	mkdir -p var
	@# Compiled translations and collected static files are build products, never committed.
	@if ls locale/*/LC_MESSAGES/*.po >/dev/null 2>&1; then DEBUG=true $(MANAGE) compilemessages -v0 --ignore=.venv; fi
	DEBUG=false SECRET_KEY=collectstatic-only $(MANAGE) collectstatic --noinput -v0

run: setup
	DEBUG=$${DEBUG:-true} $(MANAGE) migrate --noinput
	DEBUG=$${DEBUG:-true} $(MANAGE) createcachetable
	DEBUG=$${DEBUG:-true} $(MANAGE) seed_demo
	DEBUG=$${DEBUG:-true} $(MANAGE) serve --mail-sink

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup  # by hand only: make bench BENCH_ARGS="--recipients 10000 --channels email"
	$(BIN)/python bench/fanout.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
