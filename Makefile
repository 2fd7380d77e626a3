# The README's two commands: `make demo` (the pipeline end to end on the local stack) and
# `make test` (everything CI runs). Both set up what is missing first (scripts/bootstrap.sh).
VENV   := .venv
PY     := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test bootstrap tools lint typecheck unit functional deploy-checks bench-core clean

bootstrap:
	@bash scripts/bootstrap.sh

tools: bootstrap
	@bash scripts/install_tools.sh

demo: bootstrap
	$(PY) -m local.demo

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

deploy-checks: tools
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/deploy

bench-core: bootstrap
	$(PY) -m bench.core_bench

clean:
	rm -rf .local-stack .aws-sam .pytest_cache .mypy_cache .ruff_cache
