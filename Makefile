# FlashNotify: `make run` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt requirements-nodeps.txt | cksum | cut -d' ' -f1)
MANAGE := $(BIN)/python manage.py
PYTEST_ARGS ?=

.PHONY: setup browser xmlsec axe run test screenshots bench clean

$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	rm -f $(VENV)/.installed-*
	touch $@

# What running needs; the browser and axe-core are for the tests only (`make test` adds them).
setup: $(STAMP)
	mkdir -p var
	@# Compiled translations and collected static files are build products, never committed.
	@if ls locale/*/LC_MESSAGES/*.po >/dev/null 2>&1; then DEBUG=true $(MANAGE) compilemessages -v0 --ignore=.venv; fi
	DEBUG=false SECRET_KEY=collectstatic-only $(MANAGE) collectstatic --noinput -v0

# Debian's chromium for the browser tests (never a downloaded browser). Without root or
# without the package, the browser tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: browser tests will be skipped"; }

# Debian's xmlsec1, with which pysaml2 signs and verifies SAML messages: single sign-on through SAML needs
# it to run, and the SAML tests skip without it. Without root or without the package, say so.
xmlsec:
	@command -v xmlsec1 >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xmlsec1 >/dev/null) \
	  || echo "xmlsec1 could not be installed: SAML sign-in will not work and its tests will be skipped"; }

# axe-core from the npm registry, pinned, for the browser tests' accessibility checks (git-ignored var/).
AXE_VERSION := 4.14.1
AXE_JS := var/axe-$(AXE_VERSION)/node_modules/axe-core/axe.min.js
axe:
	@test -f $(AXE_JS) || { command -v npm >/dev/null 2>&1 && mkdir -p var/axe-$(AXE_VERSION) && \
	  npm install --silent --no-save --no-package-lock --no-audit --no-fund --prefix var/axe-$(AXE_VERSION) \
	    axe-core@$(AXE_VERSION) >/dev/null 2>&1; } || \
	  echo "npm could not install axe-core: the accessibility checks will be skipped"

# Another instance beside this one: make run PORT=8001 EMAIL_PORT=1026 (web server, mail sink).
run: setup xmlsec
	DEBUG=$${DEBUG:-true} $(MANAGE) migrate --noinput
	DEBUG=$${DEBUG:-true} $(MANAGE) seed_demo
	DEBUG=$${DEBUG:-true} EMERGENCY_TEST_COHORT=$${EMERGENCY_TEST_COHORT-emergency-test-list} $(MANAGE) serve --mail-sink

test: setup browser xmlsec axe
	@# The layers contract (.importlinter): an import that runs back up fails the suite.
	$(BIN)/lint-imports --no-cache
	AXE_JS=$(CURDIR)/$(AXE_JS) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The README's screenshots (docs/screenshots), taken again by the browser tests; `make test` writes them to var/.
screenshots: setup browser axe
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots AXE_JS=$(CURDIR)/$(AXE_JS) $(BIN)/python -m pytest -q -k browser $(PYTEST_ARGS)

# Every speed figure in one table (bench/run.py); by hand only, on a quiet machine: make bench BENCH_ARGS="--quick"
bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
