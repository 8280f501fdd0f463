# Every target runs from a fresh clone: `make install` is a prerequisite where needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Ports of `make run` and `make emulator`: unset, `python -m app run` takes 8000 and, for the
# emulator, EMULATOR_PORT, else the port of STRIPE_API_BASE, else 12111.
PORT ?=
EMULATOR_PORT ?=
# Compose: the docker CLI's plugin where there is one, else Debian's `docker-compose` (.ci/run
# installs it); `config` needs no Docker engine.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.DEFAULT_GOAL := help
.PHONY: help install run migrate emulator test fuzz lint format bench bench-emulator bench-service bench-webhooks bench-scale bench-reconcile bench-events soak clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install the project with its dev tools

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install ## Serve on :8000 or PORT (sandbox: SQLite in ./var, the emulator on :12111 or EMULATOR_PORT)
	$(BIN)/python -m app run $(if $(PORT),--port $(PORT)) $(if $(EMULATOR_PORT),--emulator-port $(EMULATOR_PORT))

migrate: install ## Bring DATABASE_URL to the latest schema
	$(BIN)/python -m app migrate

emulator: install ## Start the offline Stripe emulator (EMULATOR_PORT, default 12111)
	$(BIN)/python -m emulator --port $(or $(EMULATOR_PORT),12111)

test: install ## Run the whole test suite
	$(BIN)/pytest

FUZZ_EXAMPLES ?= 500
fuzz: install ## Schemathesis on the service's OpenAPI, FUZZ_EXAMPLES per operation (default 500)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -p no:cacheprovider tests/app/test_fuzz.py

lint: install ## ruff, mypy strict, hadolint (Dockerfile), compose config (docker-compose.yml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	@command -v $(firstword $(COMPOSE)) >/dev/null || { \
	  echo "make lint: Docker Compose is missing: apt-get install docker-compose" >&2; exit 1; }
	$(COMPOSE) -f docker-compose.yml config --quiet

format: install ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: bench-emulator bench-service bench-webhooks ## Every benchmark (needs wrk: apt-get install wrk)

soak: install ## 1,000 payment flows, 2 service processes, Stripe faults, a SIGKILL (needs Postgres)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

bench-emulator: install ## PaymentIntent creations/s through the emulator with 100,000 stored
	$(BIN)/python -m bench.emulator

bench-service: install ## POST /payment-intents vs the seed's Express endpoint (needs node, Postgres)
	$(BIN)/python -m bench.service $(BENCH_SERVICE_ARGS)

# N: how many orders a bench-scale or bench-reconcile run loads (defaults 1M and 100,000).
N ?=
bench-scale: install ## N orders (default 1M) in Postgres: every documented read's p50/p99 and EXPLAIN
	$(BIN)/python -m bench.scale --n $(or $(N),1000000) $(BENCH_SCALE_ARGS)

bench-reconcile: install ## One reconcile from its events cursor over N orders (default 100,000), 1% paid at Stripe unseen (needs wrk, Postgres)
	$(BIN)/python -m bench.reconcile --orders $(or $(N),100000) $(BENCH_RECONCILE_ARGS)

bench-webhooks: install ## Signed events/s vs bare verification; a 100,000-event backlog drained (Postgres)
	$(BIN)/python -m bench.webhook_backlog $(BENCH_WEBHOOKS_ARGS)

bench-events: install ## Outbox to RabbitMQ (confirms) and to a webhook endpoint: events/s vs the bare publisher, commit-to-arrival latency (Postgres, RabbitMQ)
	$(BIN)/python -m bench.events_out $(BENCH_EVENTS_ARGS)

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var
