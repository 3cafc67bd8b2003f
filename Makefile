# Two commands set everything up on a fresh Debian/Ubuntu machine with Python 3.11+ and Node 20+:
#   make demo   the monitor on the bundled simulated fleet (local Azure emulator + Azurite)
#   make test   the whole suite, with ruff and mypy
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-installed
NODE_STAMP := node_modules/.deps-installed
SYSTEM_TOOLS := iptables ufw nc ip chromium
PYTEST_ARGS ?=

.PHONY: deps system-deps checkov lint typecheck test demo bench serve clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# checkov pins packages that clash with ours (pycep-parser, packaging), so it lives in its own venv.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/bin/checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==3.3.30

checkov: $(CHECKOV_VENV)/bin/checkov

deps: $(DEPS_STAMP) $(NODE_STAMP)

# The real-kernel tests need these, and the fleet page's browser tests need Debian's chromium (Playwright drives
# it through executable_path; nothing is downloaded at run time). As root we install them, otherwise those
# tests skip and say why (under CI, REQUIRE_KERNEL/REQUIRE_BROWSER turn such skips into failures).
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages for:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables ufw netcat-openbsd iproute2 chromium >/dev/null; \
	  else echo "note: missing$$missing; kernel tests will skip (run make test as root to install them)"; fi; \
	fi

lint: deps
	$(BIN)/ruff check .

typecheck: deps
	$(BIN)/mypy

test: deps system-deps checkov lint typecheck
	PATH="$$PATH:/usr/sbin:/sbin" REQUIRE_CHECKOV=1 scripts/with-azurite.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

demo: deps
	$(BIN)/python -m shared demo

serve: deps
	$(BIN)/python -m shared serve

bench: deps system-deps
	PATH="$$PATH:/usr/sbin:/sbin" $(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
