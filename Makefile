# Quick start: `make plan` (offline plan of the default stack) and `make test`.
# Both create .venv from the pinned requirements on first use; no AWS account or Pulumi CLI needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= dev

.PHONY: plan plan-json size size-json test bench catalog contract clean

# The first run installs the pinned requirements (a few minutes); say so instead of sitting silent.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "First run: creating $(VENV) and installing the pinned requirements (a few minutes, once)..." >&2
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt >&2
	@touch $@
	@echo "Installed." >&2

plan: $(VENV)/.installed        ## offline plan of STACK (default dev): verdict, sizing, cost, findings, resources
	@$(PY) plan.py --stack $(STACK)

plan-json: $(VENV)/.installed   ## the same as one JSON object (only JSON on stdout)
	@$(PY) plan.py --stack $(STACK) --json

size: $(VENV)/.installed        ## sizing, costs and advice of STACK without Pulumi: seconds, for iterating on a stack file
	@$(PY) plan.py --stack $(STACK) --sizing-only

size-json: $(VENV)/.installed
	@$(PY) plan.py --stack $(STACK) --sizing-only --json

catalog: $(VENV)/.installed     ## the GPU instance catalog the planner chooses from
	@$(PY) plan.py --catalog

test: $(VENV)/.installed        ## unit, property, policy and offline-plan tests (no cloud, no network)
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(VENV)/.installed       ## wall time and RSS of the prod plan, --sizing-only's share of it, the planner alone
	@$(PY) -m tests.bench

contract: $(VENV)/.installed    ## every shipped stack, the catalog and a broken config against schemas/plan.schema.json
	$(PY) schemas/validate_plans.py

clean:
	rm -rf $(VENV) .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
