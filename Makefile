# The two commands of the README's quick start: `make bench` and `make test`.
# Each creates the environments it needs when they are missing (idempotent: a stamp file per
# environment, rebuilt when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.bnbench-installed
# The main environment: every framework that installs beside numpy 2 (shared/FRAMEWORKS.md).
EXTRAS := test,torch,tensorflow,jax,report,progress,bench
# The frameworks the test run must cover: a missing one fails the run instead of being skipped.
TEST_FRAMEWORKS ?= numpy,torch,tensorflow,jax
PYTEST_ARGS ?=

# `make bench GRID=full` times everything (every mode, dtype and size); quick is the default.
GRID ?= quick
THREADS ?= 2
ASV_ARGS ?=
BENCH_REGEX ?= TrainStep|Digits

.PHONY: test bench env clean-env

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing bnbench[$(EXTRAS)] into $(VENV) (log: $(VENV)/pip.log)"
	@$(VENV)/bin/python -m pip install --disable-pip-version-check -e ".[$(EXTRAS)]" > $(VENV)/pip.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(VENV)/pip.log | tail -40; exit 1; }
	@touch $@

test: $(STAMP)
	BNBENCH_FRAMEWORKS=$(TEST_FRAMEWORKS) $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	@$(VENV)/bin/asv machine --yes > /dev/null
	# a failed benchmark makes asv (and so this) exit non-zero; skips, with their reasons, do not
	BNBENCH_GRID=$(GRID) BNBENCH_THREADS=$(THREADS) $(VENV)/bin/asv run --show-stderr -e -b "$(BENCH_REGEX)" $(ASV_ARGS) HEAD^!
	@echo "asv results: results/<machine>/ (html: $(VENV)/bin/asv publish, then .asv/html)"

clean-env:
	rm -rf $(VENV)
