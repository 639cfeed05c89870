# One command to run the app, one to test it. Everything installs into .venv from pyproject.toml.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3
export PATH := $(BIN):$(PATH)
export FLASK_APP := app

.PHONY: install run test lint bench postman stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Without CREEM_API_KEY, payments go to the local Creem stand-in (Procfile.dev's `creem`);
# without MAIL_URL, email goes to the local SMTP stand-in (`mail`, page on port 5057).
RUN_PROCESSES := web worker $(if $(CREEM_API_KEY),,creem) $(if $(MAIL_URL),,mail)

## run: migrate, seed the demo account, and serve web + worker (+ the Creem stand-in when
## CREEM_API_KEY is unset, the mail stand-in when MAIL_URL is unset) on http://127.0.0.1:5000
run: install
	flask db upgrade
	flask seed-demo
	honcho -f Procfile.dev start $(RUN_PROCESSES)

## test: the whole suite on real PostgreSQL and Redis, with coverage
test: install
	python -m pytest --cov=credit_app --cov-report=term --cov-report=xml $(PYTEST_ARGS); \
	  status=$$?; if [ $$status -eq 5 ]; then echo "no tests ran" >&2; exit 1; fi; exit $$status
	@echo "credit_app/services coverage (90 % required):"
	python -m coverage report --include='credit_app/services/*' --fail-under=90 --format=total
	ruff check .

lint: install
	ruff check .

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
	rm -rf $(VENV) .pytest_cache .ruff_cache .coverage coverage.xml .hypothesis
