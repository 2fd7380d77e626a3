# The README's two commands: `make demo` (the pipeline end to end on the local stack) and
# `make test` (everything CI runs). Both set up what is missing first (scripts/bootstrap.sh).
VENV   := .venv
PY     := $(VENV)/bin/python
CDC    := $(VENV)/bin/cdc
# SPEC=<file>: your pipeline spec for demo, sql, invoke and status (the warehouse is migrated
# to it first); ARGS: more options of `cdc demo` (`cdc demo --help`).
SPEC_ARG = $(if $(SPEC),--spec "$(SPEC)")
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test bootstrap tools lint typecheck unit functional e2e deploy-checks bench-core bench-e2e clean

bootstrap:
	@bash scripts/bootstrap.sh

tools: bootstrap
	@bash scripts/install_tools.sh

demo: bootstrap
	$(CDC) demo $(SPEC_ARG) $(ARGS)

test: bootstrap tools lint typecheck
	$(VENV)/bin/pytest -q -p no:cacheprovider

lint: bootstrap
	$(VENV)/bin/ruff check .

typecheck: bootstrap
	$(VENV)/bin/mypy

unit: bootstrap
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

functional: bootstrap
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/functional

e2e: bootstrap
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/e2e

deploy-checks: tools
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/deploy

bench-core: bootstrap
	$(PY) -m bench.core_bench

# Capacity of the local pipeline: a 100,000-change backlog drained, each part's ceiling alone,
# latency at half the capacity; 14-20 minutes on 2 shared cores. Quicker: ARGS="--backlog 20000".
bench-e2e: bootstrap
	$(PY) -m bench.e2e_bench $(ARGS)

clean:
	-@[ -x $(PY) ] && $(PY) -m local.stack stop --state-dir "$(STACK_DIR)" >/dev/null 2>&1
	rm -rf .local-stack .aws-sam .pytest_cache .mypy_cache .ruff_cache

# The persistent local stack (PostgreSQL warehouse + Redshift Data API stand-in + moto) that
# `sql` and `invoke` start on demand; STACK_DIR holds its state, logs and data.
#   make sql Q="SELECT count(*) FROM public.sport_event_activity"
#   make invoke EVENT=events/inserts.json          (the order to apply them: events/README.md)
#   make invoke EVENT=my_event.json SPEC=my_spec.toml   (your spec: the warehouse follows it)
#   make status                                    (lag, rows, positions, dead letters)
# Q and EVENT reach the commands through the environment, so quotes in them stay as typed.
STACK_DIR ?= .local-stack/stack
.PHONY: sql invoke status stack-start stack-stop events

sql: bootstrap
	@$(CDC) sql --state-dir "$(STACK_DIR)" $(SPEC_ARG) "$$Q"

invoke: bootstrap
	@$(CDC) invoke --state-dir "$(STACK_DIR)" $(SPEC_ARG) "$$EVENT"

status: bootstrap
	@$(CDC) status --stack-dir "$(STACK_DIR)" $(SPEC_ARG)

stack-start: bootstrap
	@$(PY) -m local.stack start --state-dir "$(STACK_DIR)"

stack-stop:
	@$(PY) -m local.stack stop --state-dir "$(STACK_DIR)"

events: bootstrap
	@$(PY) scripts/make_events.py

# The Glue batch function on local Spark vs the Lambda handler, on the same records and the
# local stack (started if needed); prints both rates, the Glue driver's memory for 10,000- and
# 100,000-record batches and, last, ratio=<glue/lambda>.
.PHONY: bench-glue
bench-glue: bootstrap
	$(PY) -m bench.glue_bench --stack-dir "$(STACK_DIR)"

# The measured inputs of docs/cost.md: per batch of each path, Data API calls, statements and
# their durations, S3/SQS requests, record sizes (key=value lines). Quicker: ARGS="--small-batches 3".
.PHONY: bench-cost
bench-cost: bootstrap
	$(PY) -m bench.cost_inputs --stack-dir "$(STACK_DIR)" $(ARGS)

# The built Kinesis consumer in the Lambda container (`sam local invoke`) on the local stack:
#   make sam-invoke EVENT=events/inserts.json
# The first run installs docker.io/debootstrap if missing, starts the project's dockerd and
# builds the python3.12 base image (scripts/lambda_docker.sh, cached). Fails when the function's
# response is an error (sam itself exits 0 then).
.PHONY: sam-invoke lambda-docker-stop
sam-invoke: tools
	@$(PY) scripts/sam_invoke.py --state-dir "$(STACK_DIR)" "$$EVENT"

lambda-docker-stop:
	@bash scripts/lambda_docker.sh stop

# Batches touching the shipped 4-table spec and a 200-table spec, the same changes per batch:
# Data API calls and statements per batch, changes/s; last line ratio=<200 tables / 4 tables>.
.PHONY: bench-tables
bench-tables: bootstrap
	$(PY) -m bench.tables_bench --stack-dir "$(STACK_DIR)" $(ARGS)

# The same offered load through 1, 4 and 16 Kinesis shards, each on a fresh stream and warehouse
# database, with the single applier (and inline, for contrast): changes/s drained, Redshift
# transactions/min, statements and Data API calls per 1,000 changes, an analyst's longest wait
# on the wide table; last line ratio=<statements per 1,000 changes, 16 shards / 1 shard>.
# About 4 minutes on 2 shared cores (2026-11-30). Quicker: ARGS="--inline-shards '' --seconds 10".
.PHONY: bench-scale
bench-scale: bootstrap
	$(PY) -m bench.scale_bench --stack-dir "$(STACK_DIR)" $(ARGS)
