# One command to run the app, one to test it. Everything installs into .venv from the hashed lock
# (requirements-dev.txt), which `make lock` regenerates from pyproject.toml.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3
export PATH := $(BIN):$(PATH)
export FLASK_APP := app

.PHONY: install lock run test lint bench postman stop clean

# The pinned, hashed dependencies first (the runtime, the `local` embedded servers and the dev
# tools), then the project itself without resolving anything again.
$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# requirements.txt is what a Heroku dyno installs (the runtime only); requirements-dev.txt adds
# the `local` and `dev` extras, and requirements.txt is resolved inside it so both agree.
# Existing pins are kept; `make lock UPGRADE=1` moves everything to the newest allowed release.
UV_COMPILE = uv pip compile pyproject.toml --quiet --generate-hashes --universal \
	--python-version 3.11 $(if $(UPGRADE),--upgrade)

## lock: regenerate requirements.txt and requirements-dev.txt from pyproject.toml
lock: install
	$(UV_COMPILE) --extra dev --extra local -o requirements-dev.txt
	$(UV_COMPILE) -c requirements-dev.txt -o requirements.txt

# Without CREEM_API_KEY, payments go to the local Creem stand-in (Procfile.dev's `creem`);
# without MAIL_URL, email goes to the local SMTP stand-in (`mail`, page on port 5057).
RUN_PROCESSES := web worker $(if $(CREEM_API_KEY),,creem) $(if $(MAIL_URL),,mail)

## run: migrate, seed the demo account, and serve web + worker (+ the Creem stand-in when
## CREEM_API_KEY is unset, the mail stand-in when MAIL_URL is unset) on http://127.0.0.1:5000
run: install
	flask db upgrade
	flask seed-demo
	honcho -f Procfile.dev start $(RUN_PROCESSES)

## test: the whole suite on real PostgreSQL and Redis, with coverage, then ruff (lint and format) and mypy
test: install
	python -m pytest --cov=credit_app --cov-report=term --cov-report=xml $(PYTEST_ARGS); \
	  status=$$?; if [ $$status -eq 5 ]; then echo "no tests ran" >&2; exit 1; fi; exit $$status
	@echo "credit_app/services coverage (90 % required):"
	python -m coverage report --include='credit_app/services/*' --fail-under=90 --format=total
	ruff check .
	ruff format --check .
	mypy

## lint: ruff (lint and format), and mypy on the files [tool.mypy] in pyproject.toml names
lint: install
	ruff check .
	ruff format --check .
	mypy

## bench: the 1,000-user load test (API, and browsers with live sockets), the credit path and
## the analytics queries
## (docs/performance.md), then the ledger audit
bench: install
	python -m bench.load
	python -m bench.credits
	python -m bench.analytics
	flask credits audit

postman: install
	flask api postman > docs/postman_collection.json

## stop: stop the embedded PostgreSQL and Redis (their data stays in instance/)
stop: install
	flask services stop

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .coverage coverage.xml .hypothesis
