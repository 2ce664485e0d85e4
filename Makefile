# Two commands on a fresh machine: `make run` serves, `make test` runs the suite. Both
# create .venv and install the project into it on first use, and again whenever
# pyproject.toml changes (the stamp file is older then); otherwise they install nothing.
# `make test` installs the tests' OpenID provider (npm) the same way.
#   make test PYTEST_ARGS='-q -x tests/test_seed_flow.py'    # a part of the suite

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
OIDC := tests/oidc_provider
OIDC_STAMP := $(OIDC)/node_modules/.installed
PYTEST_ARGS ?=

.PHONY: run test setup venv oidc-provider

# The service, with the embedded store unless KEYDB_URL is set; honcho reads .env.
run: setup
	$(VENV)/bin/honcho run $(VENV)/bin/authsvc serve

test: venv oidc-provider
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# What `run` needs before it starts (and `honcho start` too): the venv and .env.
setup: venv .env

venv: $(STAMP)

oidc-provider: $(OIDC_STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

$(OIDC_STAMP): $(OIDC)/package-lock.json
	npm ci --prefix $(OIDC) --no-audit --no-fund
	touch $@

# Made once from .env.example with a fresh API_JWT_SECRET, readable by its owner only,
# and never rewritten (a new secret would end every session); git ignores it.
.env:
	secret=$$($(PYTHON) -c 'import secrets; print(secrets.token_hex(32))') && \
	(umask 077 && sed "s/^API_JWT_SECRET=.*/API_JWT_SECRET=$$secret/" .env.example > $@.tmp) && \
	mv $@.tmp $@
