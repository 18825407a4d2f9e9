# The two commands of the README's quick start: `make bench` and `make test`.
# Each creates the environments it needs when they are missing (idempotent: a stamp file per
# environment, rebuilt when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.bnbench-installed
# The main environment: every framework that installs beside numpy 2 (shared/FRAMEWORKS.md).
EXTRAS := test,torch,report,progress,bench
# The frameworks the test run must cover: a missing one fails the run instead of being skipped.
TEST_FRAMEWORKS ?= numpy,torch
PYTEST_ARGS ?=

.PHONY: test env clean-env

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing bnbench[$(EXTRAS)] into $(VENV) (log: $(VENV)/pip.log)"
	@$(VENV)/bin/python -m pip install --disable-pip-version-check -e ".[$(EXTRAS)]" > $(VENV)/pip.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(VENV)/pip.log | tail -40; exit 1; }
	@touch $@

test: $(STAMP)
	BNBENCH_FRAMEWORKS=$(TEST_FRAMEWORKS) $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean-env:
	rm -rf $(VENV)
