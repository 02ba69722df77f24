# Quick start: `make plan` (offline plan of the default stack) and `make test`.
# Both create .venv from the pinned requirements on first use; no AWS account or Pulumi CLI needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= dev

.PHONY: plan plan-json test bench catalog contract clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

plan: $(VENV)/.installed        ## offline plan of STACK (default dev): sizing, resources, cost, violations
	$(PY) plan.py --stack $(STACK)

plan-json: $(VENV)/.installed
	$(PY) plan.py --stack $(STACK) --json

catalog: $(VENV)/.installed     ## the GPU instance catalog the planner chooses from
	$(PY) plan.py --catalog

test: $(VENV)/.installed        ## unit, property, policy and offline-plan tests (no cloud, no network)
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(VENV)/.installed       ## wall time and RSS of the prod plan; the planner on 1,000 deployments
	$(PY) -m tests.bench

contract: $(VENV)/.installed    ## every shipped stack, the catalog and a broken config against schemas/plan.schema.json
	$(PY) schemas/validate_plans.py

clean:
	rm -rf $(VENV) .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
